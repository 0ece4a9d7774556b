// the search crate would live here
