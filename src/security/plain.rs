//! SASL/PLAIN (RFC 4616), as Kafka's `PlainSaslServer`: one client message
//! `[authzid] NUL authcid NUL passwd`, checked against the listener's users (Kafka's JAAS
//! `user_<name>="<password>"` options); an empty server answer on success.

use std::collections::BTreeMap;

use super::{constant_time_eq, AuthError};

/// Checks one PLAIN client message; the authenticated user name on success.
pub fn authenticate(token: &[u8], users: &BTreeMap<String, String>) -> Result<String, AuthError> {
    let text = std::str::from_utf8(token).map_err(|_| AuthError::Hidden("PLAIN message is not UTF-8".into()))?;
    let parts: Vec<&str> = text.split('\u{0}').collect();
    let [authzid, username, password] = parts.as_slice() else {
        return Err(AuthError::Hidden(format!(
            "Invalid SASL/PLAIN response: expected 3 tokens, got {}",
            parts.len()
        )));
    };
    if username.is_empty() {
        return Err(AuthError::Hidden(
            "Authentication failed: username not specified".into(),
        ));
    }
    if password.is_empty() {
        return Err(AuthError::Hidden(
            "Authentication failed: password not specified".into(),
        ));
    }
    // Compare against something even for an unknown user, so timing does not tell.
    let expected = users.get(*username);
    let matches = constant_time_eq(
        expected.map_or(password.as_bytes(), |p| p.as_bytes()),
        password.as_bytes(),
    );
    if expected.is_none() || !matches {
        return Err(AuthError::Visible(
            "Authentication failed: Invalid username or password".into(),
        ));
    }
    if !authzid.is_empty() && authzid != username {
        return Err(AuthError::Visible(
            "Authentication failed: Client requested an authorization id that is different from username".into(),
        ));
    }
    Ok((*username).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> BTreeMap<String, String> {
        [("alice".to_string(), "alice-secret".to_string())].into()
    }

    #[test]
    fn plain_accepts_the_right_password_and_refuses_the_rest() {
        assert_eq!(authenticate(b"\0alice\0alice-secret", &users()).unwrap(), "alice");
        assert_eq!(authenticate(b"alice\0alice\0alice-secret", &users()).unwrap(), "alice");
        let visible = |t: &[u8]| matches!(authenticate(t, &users()), Err(AuthError::Visible(_)));
        assert!(visible(b"\0alice\0wrong"));
        assert!(visible(b"\0bob\0alice-secret"));
        assert!(visible(b"bob\0alice\0alice-secret"));
        let hidden = |t: &[u8]| matches!(authenticate(t, &users()), Err(AuthError::Hidden(_)));
        assert!(hidden(b"alice\0alice-secret"));
        assert!(hidden(b"\0\0pw"));
        assert!(hidden(b"\0alice\0"));
        assert!(hidden(b"\0alice\0a\0b"));
        assert!(hidden(&[0, 0xff, 0, 0x41]));
    }
}
