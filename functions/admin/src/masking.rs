//! Personal-data masking lives in `shared::masking` (the data function's
//! exports mask the same way); re-exported here for the admin views.

pub use shared::masking::{email, ip, name};
