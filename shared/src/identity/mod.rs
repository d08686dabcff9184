//! Who a caller is and what they may do: access tokens, built-in and custom
//! roles, permissions, users, two-factor authentication, OAuth/OIDC
//! providers and brute-force limits.

pub mod oauth;
pub mod rate_limits;
pub mod rbac;
pub mod roles;
pub mod token;
pub mod two_factor;
pub mod users;
