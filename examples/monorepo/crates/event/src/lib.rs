// the event crate would live here
