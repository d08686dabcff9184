pub mod hooks;
pub mod runs;
pub mod templates;
pub mod workflows;
