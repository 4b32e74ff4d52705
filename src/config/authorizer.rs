//! The ACL authorizer's settings, Kafka's names: `authorizer.class.name` (Kafka's
//! `StandardAuthorizer`, or the older ZooKeeper-era `AclAuthorizer`, selects the ACL authorizer;
//! empty, the default, means none: every principal may do everything and the ACL APIs answer
//! SECURITY_DISABLED), `super.users` (`User:a;User:b`) and `allow.everyone.if.no.acl.found`.

use super::{invalid, ConfigError, RawValue};
use crate::security::acl::AuthorizerSettings;

/// The class names that select the ACL authorizer.
const AUTHORIZERS: &[&str] = &[
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "kafka.security.authorizer.AclAuthorizer",
];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizerConfig {
    /// An authorizer is configured: requests are checked against the ACLs.
    pub enabled: bool,
    pub settings: AuthorizerSettings,
}

impl AuthorizerConfig {
    /// Takes `key` if it is one of these; false otherwise.
    pub fn set(&mut self, key: &str, value: &RawValue) -> Result<bool, ConfigError> {
        let text = value.as_text();
        match key {
            "authorizer.class.name" => {
                let class = text.trim();
                self.enabled = match class {
                    "" => false,
                    c if AUTHORIZERS.contains(&c) => true,
                    other => {
                        return Err(invalid(
                            key,
                            format!("`{other}`: only Kafka's StandardAuthorizer (ACLs) is supported"),
                        ))
                    }
                };
            }
            "super.users" => {
                let mut users = Vec::new();
                for u in text.split(';').map(str::trim).filter(|u| !u.is_empty()) {
                    if !u.contains(':') {
                        return Err(invalid(key, format!("`{u}` is not a principal (Type:Name)")));
                    }
                    users.push(u.to_string());
                }
                self.settings.super_users = users;
            }
            "allow.everyone.if.no.acl.found" => {
                self.settings.allow_everyone_if_no_acl_found = match text.trim() {
                    "true" => true,
                    "false" => false,
                    other => return Err(invalid(key, format!("`{other}` is not true or false"))),
                };
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}
