// the power crate would live here
