//! Radicale (PyPI, in the project's venv), the CalDAV server the hub's
//! connection tests and calendar sync run against.

/// Radicale on a free port, with one user
/// (`ada` / `calendar-pass`) and a calendar collection `/ada/keel/`. The
/// child is killed when the guard drops.
pub struct Radicale {
    child: std::process::Child,
    /// The calendar collection's URL (`…/ada/keel/`).
    pub url: String,
    dir: std::path::PathBuf,
}

impl Drop for Radicale {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub async fn radicale() -> Radicale {
    let dir = std::env::temp_dir().join(format!("keel-radicale-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("users"), "ada:calendar-pass\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let python = keel_local::repo_root().join(".keel/venv/bin/python");
    let child = std::process::Command::new(python)
        .args(["-m", "radicale", "--server-hosts", &format!("127.0.0.1:{port}")])
        .arg(format!("--storage-filesystem-folder={}", dir.join("collections").display()))
        .args(["--auth-type", "htpasswd", "--auth-htpasswd-encryption", "plain"])
        .arg(format!("--auth-htpasswd-filename={}", dir.join("users").display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("radicale in the project's venv (make venv)");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client.get(&base).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let url = format!("{base}/ada/keel/");
    let made =
        client.request(reqwest::Method::from_bytes(b"MKCALENDAR").unwrap(), &url).basic_auth("ada", Some("calendar-pass")).send().await.expect("MKCALENDAR");
    assert_eq!(made.status().as_u16(), 201, "{}", made.text().await.unwrap_or_default());
    Radicale { child, url, dir }
}
