//! End-to-end tests across tickwire crates live in `tests/`; this library is empty.
