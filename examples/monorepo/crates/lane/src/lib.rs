// the lane crate would live here
