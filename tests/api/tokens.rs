//! Access tokens that must be refused: tampered, expired, for another
//! audience, `alg: none`, and HS256 signed with the public key as secret.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use shared::identity::token::Claims;

use crate::helpers::TestApp;

fn claims(app: &TestApp, sub: &str, exp_offset: i64, aud: &str) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        iss: app.app.platform.verifier.issuer().to_string(),
        aud: aud.into(),
        sub: sub.into(),
        exp: now + exp_offset,
        iat: now,
        jti: "t".into(),
        sid: "s".into(),
        roles: vec!["super_admin".into()],
        amr: vec![shared::identity::token::amr::PASSWORD.into()],
        scope: None,
    }
}

async fn status_with(app: &TestApp, token: &str) -> (u16, String) {
    let r = app.get("/api/v1/admin/users?limit=1", token).await;
    (r.status.as_u16(), r.body["detail"].as_str().unwrap_or("").to_string())
}

#[tokio::test]
async fn bad_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let (user, _) = app.user(&["super_admin"]).await;
    let good = app.app.signer.sign(&claims(&app, &user.id, 600, shared::platform::config::AUDIENCE)).await.unwrap();
    assert_eq!(status_with(&app, &good).await.0, 200, "a good token works");

    let expired = app.app.signer.sign(&claims(&app, &user.id, -3600, shared::platform::config::AUDIENCE)).await.unwrap();
    let (status, detail) = status_with(&app, &expired).await;
    assert_eq!((status, detail.contains("expired")), (401, true), "{detail}");

    let wrong_aud = app.app.signer.sign(&claims(&app, &user.id, 600, "another-api")).await.unwrap();
    let (status, detail) = status_with(&app, &wrong_aud).await;
    assert_eq!((status, detail.contains("audience")), (401, true), "{detail}");

    // Tampered: swap in a payload naming another user; keep the signature.
    let parts: Vec<&str> = good.split('.').collect();
    let mut forged = claims(&app, "someone-else", 600, shared::platform::config::AUDIENCE);
    forged.jti = "x".into();
    let tampered = format!("{}.{}.{}", parts[0], B64.encode(serde_json::to_vec(&forged).unwrap()), parts[2]);
    assert_eq!(status_with(&app, &tampered).await.0, 401);

    // alg: none, unsigned.
    let none_header = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let none = format!("{none_header}.{}.", parts[1]);
    assert_eq!(status_with(&app, &none).await.0, 401);

    // HS256 keyed with the public key (the classic algorithm confusion).
    let spki = app.app.clients.kms.get_public_key().key_id(&app.app.platform.config.signing_key_id).send().await.unwrap().public_key.unwrap();
    let pem = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", STANDARD.encode(spki.as_ref()));
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(app.app.platform.verifier.kid().to_string());
    for secret in [pem.as_bytes(), spki.as_ref()] {
        let hs =
            jsonwebtoken::encode(&header, &claims(&app, &user.id, 600, shared::platform::config::AUDIENCE), &jsonwebtoken::EncodingKey::from_secret(secret))
                .unwrap();
        assert_eq!(status_with(&app, &hs).await.0, 401);
    }

    // Garbage and a missing scheme.
    assert_eq!(status_with(&app, "not.a.token").await.0, 401);
    let r = app.call(http::Method::GET, "/api/v1/admin/users", None, None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.headers["content-type"], "application/problem+json");
}

#[tokio::test]
async fn jwks_publishes_the_verifying_key() {
    let app = TestApp::spawn().await;
    let r = app.call(http::Method::GET, "/api/v1/auth/jwks", None, None).await;
    assert_eq!(r.status, 200);
    let key = &r.body["keys"][0];
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["alg"], "ES256");
    // A token the auth function issued verifies with the published key alone.
    let (user, token) = app.user(&["user"]).await;
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.clone()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&[shared::platform::config::AUDIENCE]);
    let data = jsonwebtoken::decode::<Claims>(&token, &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(), &validation).unwrap();
    assert_eq!(data.claims.sub, user.id);
    assert_eq!(data.header.kid.as_deref(), key["kid"].as_str());
}
