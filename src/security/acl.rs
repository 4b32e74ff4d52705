//! ACLs with Kafka's model and the rules of its `StandardAuthorizer`: resource types, literal
//! and prefixed patterns (a literal `*` matches every name), operations and the ones an ALLOW
//! implies, ALLOW and DENY (DENY wins), principals (`User:*` matches all) and hosts (`*` or
//! an address), `super.users`, and `allow.everyone.if.no.acl.found` for resources no ACL
//! names. The bindings live in the cluster metadata (`MetadataImage::acls`); every broker
//! decides from its own copy.
//!
//! Decisions are map lookups: for a resource, the literal ACLs of its name and of `*`, and the
//! prefixed ACLs of each prefix of its name (one lookup per prefix length).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::Principal;

/// Kafka's resource types (wire codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
    DelegationToken,
    User,
}

impl ResourceType {
    pub const ALL: [ResourceType; 6] = [
        Self::Topic,
        Self::Group,
        Self::Cluster,
        Self::TransactionalId,
        Self::DelegationToken,
        Self::User,
    ];

    pub fn from_code(code: i8) -> Option<Self> {
        Some(match code {
            2 => Self::Topic,
            3 => Self::Group,
            4 => Self::Cluster,
            5 => Self::TransactionalId,
            6 => Self::DelegationToken,
            7 => Self::User,
            _ => return None,
        })
    }

    pub fn code(self) -> i8 {
        match self {
            Self::Topic => 2,
            Self::Group => 3,
            Self::Cluster => 4,
            Self::TransactionalId => 5,
            Self::DelegationToken => 6,
            Self::User => 7,
        }
    }

    /// The operations Kafka reports for this type (authorized-operations bitfields).
    pub fn operations(self) -> &'static [Operation] {
        use Operation::*;
        match self {
            Self::Topic => &[
                Read,
                Write,
                Create,
                Describe,
                Delete,
                Alter,
                DescribeConfigs,
                AlterConfigs,
            ],
            Self::Group => &[Read, Describe, Delete, DescribeConfigs, AlterConfigs],
            Self::Cluster => &[
                Create,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
                Alter,
                Describe,
            ],
            Self::TransactionalId => &[Describe, Write],
            Self::DelegationToken => &[Describe],
            Self::User => &[CreateTokens, DescribeTokens],
        }
    }
}

/// The cluster resource's only name.
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// LITERAL or PREFIXED (what a binding can be).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PatternType {
    Literal,
    Prefixed,
}

impl PatternType {
    pub fn code(self) -> i8 {
        match self {
            Self::Literal => 3,
            Self::Prefixed => 4,
        }
    }
}

/// Kafka's operations (wire codes 2..=14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Operation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
    CreateTokens,
    DescribeTokens,
}

impl Operation {
    pub fn from_code(code: i8) -> Option<Self> {
        use Operation::*;
        Some(match code {
            2 => All,
            3 => Read,
            4 => Write,
            5 => Create,
            6 => Delete,
            7 => Alter,
            8 => Describe,
            9 => ClusterAction,
            10 => DescribeConfigs,
            11 => AlterConfigs,
            12 => IdempotentWrite,
            13 => CreateTokens,
            14 => DescribeTokens,
            _ => return None,
        })
    }

    pub fn code(self) -> i8 {
        use Operation::*;
        match self {
            All => 2,
            Read => 3,
            Write => 4,
            Create => 5,
            Delete => 6,
            Alter => 7,
            Describe => 8,
            ClusterAction => 9,
            DescribeConfigs => 10,
            AlterConfigs => 11,
            IdempotentWrite => 12,
            CreateTokens => 13,
            DescribeTokens => 14,
        }
    }

    /// Whether an ALLOW of `self` allows `wanted`: ALL allows everything; READ, WRITE, DELETE
    /// and ALTER imply DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS.
    fn allows(self, wanted: Operation) -> bool {
        use Operation::*;
        self == wanted
            || self == All
            || (wanted == Describe && matches!(self, Read | Write | Delete | Alter))
            || (wanted == DescribeConfigs && self == AlterConfigs)
    }

    /// Whether a DENY of `self` denies `wanted` (no implications, ALL denies everything).
    fn denies(self, wanted: Operation) -> bool {
        self == wanted || self == Operation::All
    }
}

/// ALLOW or DENY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Permission {
    Deny,
    Allow,
}

impl Permission {
    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            2 => Some(Self::Deny),
            3 => Some(Self::Allow),
            _ => None,
        }
    }

    pub fn code(self) -> i8 {
        match self {
            Self::Deny => 2,
            Self::Allow => 3,
        }
    }
}

/// One ACL (Kafka's `AclBinding`): a resource pattern and an access control entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub name: String,
    pub pattern: PatternType,
    /// `Type:Name`, e.g. `User:alice`, or `User:*`.
    pub principal: String,
    /// `*` or an address.
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

/// A filter over bindings (DescribeAcls, DeleteAcls): `None` matches anything.
#[derive(Debug, Clone, Default)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub name: Option<String>,
    /// `None`: ANY; `Some(None)`: MATCH; `Some(Some(p))`: that pattern type.
    pub pattern: Option<Option<PatternType>>,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

impl AclFilter {
    /// Kafka's `AclBindingFilter.matches`.
    pub fn matches(&self, b: &AclBinding) -> bool {
        let type_ok = self.resource_type.is_none_or(|t| t == b.resource_type);
        let pattern_ok = match (&self.pattern, &self.name) {
            // ANY: any pattern type, the exact name if one is given.
            (None, name) => name.as_ref().is_none_or(|n| *n == b.name),
            // MATCH: what would apply to a resource of that name.
            (Some(None), None) => true,
            (Some(None), Some(n)) => match b.pattern {
                PatternType::Literal => b.name == *n || b.name == "*",
                PatternType::Prefixed => n.starts_with(&b.name),
            },
            (Some(Some(p)), name) => *p == b.pattern && name.as_ref().is_none_or(|n| *n == b.name),
        };
        type_ok
            && pattern_ok
            && self.principal.as_ref().is_none_or(|p| *p == b.principal)
            && self.host.as_ref().is_none_or(|h| *h == b.host)
            && self.operation.is_none_or(|o| o == b.operation)
            && self.permission.is_none_or(|p| p == b.permission)
    }
}

/// The entry part of a binding, as the index keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    principal: String,
    host: String,
    operation: Operation,
    permission: Permission,
}

/// Every binding, indexed by resource type, pattern type and name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acls {
    index: BTreeMap<(ResourceType, PatternType), BTreeMap<String, Vec<Entry>>>,
    count: usize,
}

impl Acls {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Adds `b`; false if it was there already.
    pub fn add(&mut self, b: &AclBinding) -> bool {
        let entries = self
            .index
            .entry((b.resource_type, b.pattern))
            .or_default()
            .entry(b.name.clone())
            .or_default();
        let e = entry(b);
        if entries.contains(&e) {
            return false;
        }
        entries.push(e);
        self.count += 1;
        true
    }

    /// Removes `b`; false if it was not there.
    pub fn remove(&mut self, b: &AclBinding) -> bool {
        let key = (b.resource_type, b.pattern);
        let Some(names) = self.index.get_mut(&key) else {
            return false;
        };
        let Some(entries) = names.get_mut(&b.name) else {
            return false;
        };
        let e = entry(b);
        let before = entries.len();
        entries.retain(|x| *x != e);
        let removed = entries.len() < before;
        if entries.is_empty() {
            names.remove(&b.name);
        }
        if names.is_empty() {
            self.index.remove(&key);
        }
        if removed {
            self.count -= 1;
        }
        removed
    }

    /// Every binding, in a stable order.
    pub fn bindings(&self) -> impl Iterator<Item = AclBinding> + '_ {
        self.index.iter().flat_map(|((t, p), names)| {
            names.iter().flat_map(move |(name, entries)| {
                entries.iter().map(move |e| AclBinding {
                    resource_type: *t,
                    name: name.clone(),
                    pattern: *p,
                    principal: e.principal.clone(),
                    host: e.host.clone(),
                    operation: e.operation,
                    permission: e.permission,
                })
            })
        })
    }

    /// The entries that apply to the resource `(t, name)`: literal ones of the name and of `*`,
    /// prefixed ones of every prefix of the name.
    fn applicable<'a>(&'a self, t: ResourceType, name: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        let literal = self.index.get(&(t, PatternType::Literal));
        let prefixed = self.index.get(&(t, PatternType::Prefixed));
        let exact = literal.and_then(|m| m.get(name)).into_iter().flatten();
        let wildcard = literal
            .filter(|_| name != "*")
            .and_then(|m| m.get("*"))
            .into_iter()
            .flatten();
        let prefixes = prefixed.into_iter().flat_map(move |m| {
            name.char_indices()
                .map(|(i, c)| i + c.len_utf8())
                .filter_map(move |end| name.get(..end).and_then(|p| m.get(p)))
                .flatten()
        });
        exact.chain(wildcard).chain(prefixes)
    }
}

fn entry(b: &AclBinding) -> Entry {
    Entry {
        principal: b.principal.clone(),
        host: b.host.clone(),
        operation: b.operation,
        permission: b.permission,
    }
}

/// Who asks, from where, as ACLs spell them (`User:alice`, `10.0.0.1`): built once per request.
pub struct Requester {
    pub principal: String,
    pub host: String,
}

impl Requester {
    pub fn new(principal: &Principal, host: IpAddr) -> Self {
        Requester {
            principal: principal.to_string(),
            host: host.to_string(),
        }
    }
}

/// `super.users` and `allow.everyone.if.no.acl.found`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizerSettings {
    /// `Type:Name` strings.
    pub super_users: Vec<String>,
    pub allow_everyone_if_no_acl_found: bool,
}

fn entry_matches(e: &Entry, principal: &str, host: &str) -> bool {
    (e.principal == principal || e.principal == "User:*") && (e.host == "*" || e.host == host)
}

/// Kafka's `StandardAuthorizer.authorize` for one action.
pub fn authorize(
    settings: &AuthorizerSettings,
    acls: &Acls,
    who: &Requester,
    op: Operation,
    t: ResourceType,
    name: &str,
) -> bool {
    let (principal, host) = (&who.principal, &who.host);
    if settings.super_users.contains(principal) {
        return true;
    }
    let mut any_acl = false;
    let mut allowed = false;
    for e in acls.applicable(t, name) {
        any_acl = true;
        if !entry_matches(e, principal, host) {
            continue;
        }
        match e.permission {
            Permission::Deny if e.operation.denies(op) => return false,
            Permission::Allow if e.operation.allows(op) => allowed = true,
            _ => {}
        }
    }
    if !any_acl {
        return settings.allow_everyone_if_no_acl_found;
    }
    allowed
}

/// Kafka's `authorizeByResourceType`: an ALLOW for `op` on some resource of type `t` that no
/// matching DENY cancels (InitProducerId without a transactional id).
pub fn authorize_by_resource_type(
    settings: &AuthorizerSettings,
    acls: &Acls,
    who: &Requester,
    op: Operation,
    t: ResourceType,
) -> bool {
    let (principal, host) = (&who.principal, &who.host);
    if settings.super_users.contains(principal) {
        return true;
    }
    let bindings: Vec<AclBinding> = acls
        .bindings()
        .filter(|b| b.resource_type == t)
        .filter(|b| entry_matches(&entry(b), principal, host))
        .collect();
    let denied = |b: &AclBinding| {
        bindings.iter().any(|d| {
            d.permission == Permission::Deny
                && d.operation.denies(op)
                && match d.pattern {
                    PatternType::Literal => d.name == b.name || d.name == "*",
                    PatternType::Prefixed => b.name.starts_with(&d.name),
                }
        })
    };
    bindings
        .iter()
        .any(|b| b.permission == Permission::Allow && b.operation.allows(op) && !denied(b))
        || (settings.allow_everyone_if_no_acl_found && acls.bindings().all(|b| b.resource_type != t))
}

#[cfg(test)]
#[path = "acl_tests.rs"]
mod tests;
