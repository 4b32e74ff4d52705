use super::*;

/// The client side of an exchange, for tests: the client-final message for `server_first`.
pub(crate) fn client_final(m: ScramMechanism, password: &str, client_first_bare: &str, server_first: &str) -> String {
    client_final_with(m, password, client_first_bare, server_first, "")
}

/// As [`client_final`], with `repeat_client_nonce` in front of the nonce (librdkafka < 2.6.1).
fn client_final_with(
    m: ScramMechanism,
    password: &str,
    client_first_bare: &str,
    server_first: &str,
    repeat_client_nonce: &str,
) -> String {
    let mut salt = None;
    let mut iterations = None;
    let mut nonce = None;
    for f in server_first.split(',') {
        if let Some(s) = f.strip_prefix("s=") {
            salt = Some(STANDARD.decode(s).unwrap());
        } else if let Some(i) = f.strip_prefix("i=") {
            iterations = Some(i.parse::<i32>().unwrap());
        } else if let Some(r) = f.strip_prefix("r=") {
            nonce = Some(r.to_string());
        }
    }
    let salted = m
        .salted_password(password.as_bytes(), &salt.unwrap(), iterations.unwrap())
        .unwrap();
    let without_proof = format!("c=biws,r={}{}", repeat_client_nonce, nonce.unwrap());
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let client_key = m.hmac(&salted, b"Client Key");
    let signature = m.hmac(&m.hash(&client_key), auth_message.as_bytes());
    let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
    format!("{without_proof},p={}", STANDARD.encode(proof))
}

fn credential(m: ScramMechanism, password: &str, salt: &[u8], iterations: i32) -> ScramCredential {
    let salted = m.salted_password(password.as_bytes(), salt, iterations).unwrap();
    ScramCredential::from_salted_password(m, salt, &salted, iterations)
}

#[test]
fn rfc_7677_example_exchange() {
    let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    let cred = credential(ScramMechanism::Sha256, "pencil", &salt, 4096);
    let mut server = ScramServer::new(ScramMechanism::Sha256);
    let first = server
        .step(
            b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            |u| (u == "user").then(|| cred.clone()),
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        )
        .unwrap();
    assert_eq!(
        first,
        Step::Challenge(
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".to_vec()
        )
    );
    let done = server
        .step(
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            |_| None,
            "",
        )
        .unwrap();
    assert_eq!(
        done,
        Step::Done {
            user: "user".into(),
            reply: b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec()
        }
    );
}

fn exchange(m: ScramMechanism, stored: &ScramCredential, user: &str, password: &str) -> Result<Step, AuthError> {
    let mut server = ScramServer::new(m);
    let bare = format!("n={},r=clientnonce", user.replace('=', "=3D").replace(',', "=2C"));
    let lookup = |u: &str| (u == "al,i=ce").then(|| stored.clone());
    let Step::Challenge(first) = server.step(format!("n,,{bare}").as_bytes(), lookup, "srv")? else {
        panic!("no challenge");
    };
    let first = String::from_utf8(first).unwrap();
    server.step(client_final(m, password, &bare, &first).as_bytes(), |_| None, "")
}

#[test]
fn sha512_round_trip_escaped_names_and_wrong_passwords() {
    for m in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
        let stored = credential(m, "secret", b"salty", 4096);
        match exchange(m, &stored, "al,i=ce", "secret").unwrap() {
            Step::Done { user, reply } => {
                assert_eq!(user, "al,i=ce");
                assert!(reply.starts_with(b"v="));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            exchange(m, &stored, "al,i=ce", "wrong"),
            Err(AuthError::Hidden(_))
        ));
        assert!(matches!(
            exchange(m, &stored, "bob", "secret"),
            Err(AuthError::Hidden(_))
        ));
    }
}

#[test]
fn old_librdkafkas_repeated_client_nonce_is_accepted_but_no_other_variation() {
    let m = ScramMechanism::Sha256;
    let stored = credential(m, "pw", b"salt", 4096);
    let run = |repeat: &str| {
        let mut server = ScramServer::new(m);
        let bare = "n=u,r=cnonce";
        let Ok(Step::Challenge(first)) =
            server.step(format!("n,,{bare}").as_bytes(), |_| Some(stored.clone()), "snonce")
        else {
            panic!("no challenge");
        };
        let first = String::from_utf8(first).unwrap();
        server.step(
            client_final_with(m, "pw", bare, &first, repeat).as_bytes(),
            |_| None,
            "",
        )
    };
    assert!(run("").is_ok());
    assert!(run("cnonce").is_ok());
    assert!(run("other").is_err());
    assert!(run("cnoncecnonce").is_err());
}

#[test]
fn malformed_messages_fail_without_panicking() {
    let stored = credential(ScramMechanism::Sha256, "pw", b"s", 4096);
    let first = |t: &str| ScramServer::new(ScramMechanism::Sha256).step(t.as_bytes(), |_| Some(stored.clone()), "x");
    for bad in [
        "",
        "y,,n=u,r=a",
        "p=tls,,n=u,r=a",
        "n,,n=,r=a",
        "n,,n=u=,r=a",
        "n,,n=u",
        "n,,r=a,n=u",
        "n,,n=u,r=",
        "n,,n=u,r=a,1=2",
        "n,,n=u,r=a,tokenauth=true",
    ] {
        assert!(first(bad).is_err(), "{bad}");
    }
    assert!(matches!(first("n,a=other,n=u,r=a"), Err(AuthError::Visible(_))));
    let low = credential(ScramMechanism::Sha256, "pw", b"s", 4095);
    assert!(ScramServer::new(ScramMechanism::Sha256)
        .step(b"n,,n=u,r=a", |_| Some(low.clone()), "x")
        .is_err());
    for bad in [
        "",
        "c=biws",
        "c=biws,r=ax,p=!!",
        "c=biws,r=other,p=AAAA",
        "c=biws,r=ax,p=AAAA",
    ] {
        let mut s = ScramServer::new(ScramMechanism::Sha256);
        s.step(b"n,,n=u,r=a", |_| Some(stored.clone()), "x").unwrap();
        assert!(s.step(bad.as_bytes(), |_| None, "").is_err(), "{bad}");
        assert!(s.step(b"anything", |_| None, "").is_err());
    }
}

proptest::proptest! {
    /// Whatever a client sends, the exchanges answer with a result, never a panic.
    #[test]
    fn arbitrary_tokens_never_panic(first in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
                                    last in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
                                    text in "n,(a=[a-z=,]{0,4})?,n=[a-z=23CD]{0,6},r=[!-~]{0,8}(,[a-z]=[a-z]{0,3}){0,2}") {
        let stored = credential(ScramMechanism::Sha512, "pw", b"s", 4096);
        for token in [first.as_slice(), text.as_bytes()] {
            let mut s = ScramServer::new(ScramMechanism::Sha512);
            let _ = s.step(token, |_| Some(stored.clone()), "n");
            let _ = s.step(&last, |_| Some(stored.clone()), "n");
        }
        let users = [("u".to_string(), "p".to_string())].into();
        let _ = crate::security::plain::authenticate(&first, &users);
    }
}
