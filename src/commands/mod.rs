//! Command bodies that do more than wire a few calls together; `cli` parses the arguments,
//! loads the configuration and maps the outcome to an exit code.

pub mod render;
pub mod test_channel;
