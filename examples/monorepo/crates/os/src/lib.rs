// the os crate would live here
