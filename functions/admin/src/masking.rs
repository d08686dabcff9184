//! Personal-data masking lives in `shared::domain::masking` (the data function's
//! exports mask the same way); re-exported here for the admin views.

pub use shared::domain::masking::{email, ip, name};
