// the box crate would live here
