// the safeclaw crate would live here
