use super::*;

fn b(
    t: ResourceType,
    name: &str,
    pattern: PatternType,
    principal: &str,
    op: Operation,
    perm: Permission,
) -> AclBinding {
    AclBinding {
        resource_type: t,
        name: name.into(),
        pattern,
        principal: principal.into(),
        host: "*".into(),
        operation: op,
        permission: perm,
    }
}

fn check(settings: &AuthorizerSettings, acls: &Acls, user: &str, op: Operation, t: ResourceType, name: &str) -> bool {
    let who = Requester::new(&Principal::user(user), [127, 0, 0, 1].into());
    authorize(settings, acls, &who, op, t, name)
}

use Operation::*;
use PatternType::*;
use Permission::*;
use ResourceType::*;

#[test]
fn kafkas_rules_literal_prefixed_wildcard_implications_deny_and_super_users() {
    let mut acls = Acls::default();
    assert!(acls.add(&b(Topic, "orders", Literal, "User:alice", Read, Allow)));
    assert!(!acls.add(&b(Topic, "orders", Literal, "User:alice", Read, Allow)));
    acls.add(&b(Topic, "pay-", Prefixed, "User:alice", Write, Allow));
    acls.add(&b(Topic, "pay-secret", Literal, "User:alice", Write, Deny));
    acls.add(&b(Topic, "*", Literal, "User:*", Describe, Allow));
    acls.add(&b(Group, "g", Literal, "User:bob", All, Allow));
    acls.add(&b(Group, "g", Literal, "User:bob", Read, Deny));
    let s = AuthorizerSettings {
        super_users: vec!["User:admin".into()],
        allow_everyone_if_no_acl_found: false,
    };
    assert_eq!(acls.len(), 6);
    assert!(check(&s, &acls, "alice", Read, Topic, "orders"));
    assert!(!check(&s, &acls, "alice", Write, Topic, "orders"));
    // READ implies DESCRIBE; the wildcard gives everyone DESCRIBE anyway.
    assert!(check(&s, &acls, "carol", Describe, Topic, "orders"));
    assert!(!check(&s, &acls, "carol", Read, Topic, "orders"));
    // Prefixed, and DENY over ALLOW.
    assert!(check(&s, &acls, "alice", Write, Topic, "pay-in"));
    assert!(check(&s, &acls, "alice", Describe, Topic, "pay-in"));
    assert!(!check(&s, &acls, "alice", Write, Topic, "pay-secret"));
    assert!(!check(&s, &acls, "alice", Write, Topic, "pay"));
    // ALL allows everything but the denied READ; DENY READ does not deny DESCRIBE.
    assert!(check(&s, &acls, "bob", Delete, Group, "g"));
    assert!(!check(&s, &acls, "bob", Read, Group, "g"));
    assert!(check(&s, &acls, "bob", Describe, Group, "g"));
    // Super users, and resources no ACL names.
    assert!(check(&s, &acls, "admin", Alter, Cluster, CLUSTER_NAME));
    assert!(!check(&s, &acls, "alice", Alter, Cluster, CLUSTER_NAME));
    let open = AuthorizerSettings {
        allow_everyone_if_no_acl_found: true,
        ..s.clone()
    };
    assert!(check(&open, &acls, "alice", Alter, Cluster, CLUSTER_NAME));
    assert!(!check(&open, &acls, "carol", Write, Topic, "orders"));
    // Hosts.
    let mut hosted = Acls::default();
    hosted.add(&AclBinding {
        host: "10.0.0.1".into(),
        ..b(Topic, "t", Literal, "User:alice", Read, Allow)
    });
    assert!(!check(&s, &hosted, "alice", Read, Topic, "t"));
    // Removal.
    assert!(acls.remove(&b(Topic, "pay-secret", Literal, "User:alice", Write, Deny)));
    assert!(!acls.remove(&b(Topic, "pay-secret", Literal, "User:alice", Write, Deny)));
    assert!(check(&s, &acls, "alice", Write, Topic, "pay-secret"));
    assert_eq!(acls.len(), 5);
}

#[test]
fn filters_any_match_and_exact_patterns() {
    let mut acls = Acls::default();
    acls.add(&b(Topic, "orders", Literal, "User:alice", Read, Allow));
    acls.add(&b(Topic, "ord", Prefixed, "User:bob", Read, Allow));
    acls.add(&b(Topic, "*", Literal, "User:carol", Read, Allow));
    acls.add(&b(Group, "orders", Literal, "User:alice", Read, Allow));
    let count = |f: AclFilter| acls.bindings().filter(|x| f.matches(x)).count();
    assert_eq!(count(AclFilter::default()), 4);
    let name = Some("orders".to_string());
    assert_eq!(
        count(AclFilter {
            resource_type: Some(Topic),
            name: name.clone(),
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        count(AclFilter {
            resource_type: Some(Topic),
            name: name.clone(),
            pattern: Some(None),
            ..Default::default()
        }),
        3
    );
    assert_eq!(
        count(AclFilter {
            pattern: Some(Some(Prefixed)),
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        count(AclFilter {
            principal: Some("User:alice".into()),
            operation: Some(Read),
            permission: Some(Allow),
            ..Default::default()
        }),
        2
    );
}

#[test]
fn by_resource_type_needs_an_allow_no_deny_cancels() {
    let s = AuthorizerSettings::default();
    let who = Requester::new(&Principal::user("alice"), [127, 0, 0, 1].into());
    let mut acls = Acls::default();
    assert!(!authorize_by_resource_type(&s, &acls, &who, Write, Topic));
    acls.add(&b(Topic, "t-", Prefixed, "User:alice", Write, Allow));
    assert!(authorize_by_resource_type(&s, &acls, &who, Write, Topic));
    acls.add(&b(Topic, "t", Prefixed, "User:alice", Write, Deny));
    assert!(!authorize_by_resource_type(&s, &acls, &who, Write, Topic));
}
