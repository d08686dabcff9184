//! Personal data is shown only to principals holding `pii:read`; others see
//! masked values that still help recognise a record (`a***@example.com`).

pub fn email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => format!("{}***@{domain}", local.chars().next().unwrap_or('*')),
        None => "***".into(),
    }
}

pub fn name(name: &str) -> String {
    match name.chars().next() {
        Some(c) => format!("{c}***"),
        None => String::new(),
    }
}

/// What replaces a value that has no recognisable masked form (user agents,
/// recorded changes).
pub const REDACTED: &str = "[masked]";

/// `203.0.113.7` → `203.0.113.x`; IPv6 keeps its first four groups.
pub fn ip(ip: &str) -> String {
    if let Some((head, _)) = ip.rsplit_once('.') {
        format!("{head}.x")
    } else {
        let groups: Vec<&str> = ip.split(':').take(4).collect();
        format!("{}::x", groups.join(":"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn masks() {
        assert_eq!(super::email("ada@example.com"), "a***@example.com");
        assert_eq!(super::name("Ada Lovelace"), "A***");
        assert_eq!(super::ip("203.0.113.7"), "203.0.113.x");
        assert_eq!(super::ip("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::x");
    }
}
