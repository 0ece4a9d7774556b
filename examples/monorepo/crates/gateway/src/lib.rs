// the gateway crate would live here
