//! `MetadataImage`: the cluster metadata as of one offset of the metadata log (Kafka's
//! `MetadataImage`). A pure value: [`MetadataImage::apply`] is deterministic, so every node that
//! applies the same log holds the same image, and refusals (a lost compare-and-set, a name
//! taken) are decided here, identically everywhere.
//!
//! Readers hold an `Arc<MetadataImage>`; topics are `Arc`s too, so a new image shares every
//! topic it did not change with the one before, and a delta is found by pointer comparison.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::controller::record::{
    ApplyResult, Endpoint, MetadataCommand, MetadataRecord, NodeId, PartitionChange, PartitionRegistration, Refusal,
    NO_LEADER,
};
use crate::security::acl::Acls;
use crate::security::scram::{ScramCredential, ScramMechanism};

fn is_empty_acls(acls: &Arc<Acls>) -> bool {
    acls.is_empty()
}

/// A registered broker (Kafka's `BrokerRegistration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub id: NodeId,
    /// The log offset of its registration.
    pub epoch: i64,
    pub incarnation_id: Uuid,
    pub endpoints: Vec<Endpoint>,
    pub rack: Option<String>,
    pub fenced: bool,
    pub in_controlled_shutdown: bool,
    /// Its (only) log dir is offline: see `MetadataRecord::BrokerChange`.
    #[serde(default)]
    pub log_dir_offline: bool,
}

impl BrokerRegistration {
    /// The endpoint of listener `name`, if the broker registered one.
    pub fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.name == name)
    }
}

/// A topic: its id, partitions and config overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub name: String,
    pub id: Uuid,
    pub partitions: Vec<PartitionRegistration>,
    /// Topic-level config overrides (Kafka's topic config names).
    pub configs: BTreeMap<String, String>,
}

impl TopicImage {
    pub fn partition(&self, index: i32) -> Option<&PartitionRegistration> {
        usize::try_from(index).ok().and_then(|i| self.partitions.get(i))
    }

    pub fn partition_count(&self) -> i32 {
        i32::try_from(self.partitions.len()).unwrap_or(i32::MAX)
    }

    /// The replication factor (of the first partition, as Kafka reports it).
    pub fn replication_factor(&self) -> i16 {
        self.partitions
            .first()
            .map_or(0, |p| i16::try_from(p.replicas.len()).unwrap_or(i16::MAX))
    }
}

/// The metadata as of `offset`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    /// The last log offset applied (0: nothing yet).
    pub offset: u64,
    pub cluster_id: Option<String>,
    pub brokers: BTreeMap<NodeId, BrokerRegistration>,
    topics: BTreeMap<String, Arc<TopicImage>>,
    /// The next producer id no broker has been given.
    pub next_producer_id: i64,
    /// Dynamic broker configs, per broker and the cluster-wide defaults.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub broker_configs: BTreeMap<NodeId, BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub default_broker_configs: BTreeMap<String, String>,
    /// SCRAM credentials, per user and mechanism.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scram_credentials: BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>,
    /// The ACLs (shared between images until one changes them).
    #[serde(default, skip_serializing_if = "is_empty_acls")]
    pub acls: Arc<Acls>,
    #[serde(skip)]
    names_by_id: HashMap<Uuid, String>,
}

impl MetadataImage {
    /// Rebuilds what is derived (after deserializing a snapshot).
    pub fn reindex(&mut self) {
        self.names_by_id = self.topics.values().map(|t| (t.id, t.name.clone())).collect();
    }

    pub fn topic(&self, name: &str) -> Option<&Arc<TopicImage>> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<&Arc<TopicImage>> {
        self.names_by_id.get(&id).and_then(|n| self.topics.get(n))
    }

    /// Every topic, by name.
    pub fn topics(&self) -> impl Iterator<Item = &Arc<TopicImage>> {
        self.topics.values()
    }

    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }

    pub fn partition_count(&self) -> usize {
        self.topics.values().map(|t| t.partitions.len()).sum()
    }

    /// Registered, unfenced brokers.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    pub fn is_live(&self, id: NodeId) -> bool {
        self.brokers.get(&id).is_some_and(|b| !b.fenced)
    }

    /// May lead a partition or join an ISR: live, not in controlled shutdown and with its log
    /// dir online (Kafka's acceptable leader, KIP-841's eligible replica, KIP-858's offline
    /// directories).
    pub fn is_eligible(&self, id: NodeId) -> bool {
        self.brokers
            .get(&id)
            .is_some_and(|b| !b.fenced && !b.in_controlled_shutdown && !b.log_dir_offline)
    }

    /// The dynamic config overrides of `broker`, or (`None`) the cluster-wide defaults.
    /// `user`'s SCRAM credential for `mechanism`.
    pub fn scram_credential(&self, user: &str, mechanism: ScramMechanism) -> Option<&ScramCredential> {
        self.scram_credentials.get(user).and_then(|m| m.get(&mechanism))
    }

    pub fn broker_config_overrides(&self, broker: Option<NodeId>) -> Option<&BTreeMap<String, String>> {
        match broker {
            Some(id) => self.broker_configs.get(&id),
            None => Some(&self.default_broker_configs),
        }
    }

    /// A dynamic broker config of `broker`: its own value, else the cluster-wide default one
    /// (`true` in the second place when it is the default).
    pub fn dynamic_broker_config(&self, broker: NodeId, key: &str) -> Option<(&str, bool)> {
        if let Some(v) = self.broker_configs.get(&broker).and_then(|c| c.get(key)) {
            return Some((v, false));
        }
        self.default_broker_configs.get(key).map(|v| (v.as_str(), true))
    }

    /// Applies one command at `offset`: all its records, or none of them (the refusal is
    /// returned and only the offset moves).
    pub fn apply(&mut self, offset: u64, command: &MetadataCommand) -> ApplyResult {
        let mut trial = self.clone();
        let mut result = ApplyResult {
            offset,
            ..ApplyResult::default()
        };
        for record in &command.records {
            if let Err(refused) = trial.apply_record(offset, record, &mut result) {
                self.offset = offset;
                result.refused = Some(refused);
                result.producer_id_start = None;
                return result;
            }
        }
        trial.offset = offset;
        *self = trial;
        result
    }

    fn apply_record(&mut self, offset: u64, record: &MetadataRecord, result: &mut ApplyResult) -> Result<(), Refusal> {
        match record {
            MetadataRecord::InitCluster { cluster_id } => {
                if self.cluster_id.is_none() {
                    self.cluster_id = Some(cluster_id.clone());
                }
            }
            MetadataRecord::RegisterBroker {
                id,
                incarnation_id,
                endpoints,
                rack,
            } => {
                self.brokers.insert(
                    *id,
                    BrokerRegistration {
                        id: *id,
                        epoch: i64::try_from(offset).unwrap_or(i64::MAX),
                        incarnation_id: *incarnation_id,
                        endpoints: endpoints.clone(),
                        rack: rack.clone(),
                        fenced: true,
                        in_controlled_shutdown: false,
                        log_dir_offline: false,
                    },
                );
            }
            MetadataRecord::BrokerChange {
                id,
                epoch,
                fenced,
                in_controlled_shutdown,
                log_dir_offline,
            } => {
                let b = self
                    .brokers
                    .get_mut(id)
                    .filter(|b| b.epoch == *epoch)
                    .ok_or(Refusal::StaleBrokerEpoch(*id, *epoch))?;
                if let Some(f) = fenced {
                    b.fenced = *f;
                }
                if let Some(s) = in_controlled_shutdown {
                    b.in_controlled_shutdown = *s;
                }
                if let Some(o) = log_dir_offline {
                    b.log_dir_offline = *o;
                }
            }
            MetadataRecord::UnregisterBroker { id, epoch } => {
                if self.brokers.get(id).is_none_or(|b| b.epoch != *epoch) {
                    return Err(Refusal::StaleBrokerEpoch(*id, *epoch));
                }
                self.brokers.remove(id);
            }
            MetadataRecord::CreateTopic {
                name,
                id,
                partitions,
                configs,
            } => {
                if self.topics.contains_key(name) {
                    return Err(Refusal::TopicAlreadyExists(name.clone()));
                }
                if self.names_by_id.contains_key(id) {
                    return Err(Refusal::TopicIdAlreadyExists(*id));
                }
                for p in partitions {
                    check_registration(p)?;
                }
                self.names_by_id.insert(*id, name.clone());
                self.topics.insert(
                    name.clone(),
                    Arc::new(TopicImage {
                        name: name.clone(),
                        id: *id,
                        partitions: partitions.clone(),
                        configs: configs.clone(),
                    }),
                );
            }
            MetadataRecord::AddPartitions { topic_id, partitions } => {
                for p in partitions {
                    check_registration(p)?;
                }
                self.topic_mut(*topic_id)?.partitions.extend(partitions.iter().cloned());
            }
            MetadataRecord::ChangePartition(change) => self.change_partition(change)?,
            MetadataRecord::RemoveTopic { topic_id } => {
                let name = self
                    .names_by_id
                    .remove(topic_id)
                    .ok_or(Refusal::UnknownTopicId(*topic_id))?;
                self.topics.remove(&name);
            }
            MetadataRecord::SetTopicConfigs { topic_id, configs } => {
                self.topic_mut(*topic_id)?.configs = configs.clone();
            }
            MetadataRecord::SetBrokerConfigs { broker, configs } => match broker {
                None => self.default_broker_configs = configs.clone(),
                Some(id) if configs.is_empty() => {
                    self.broker_configs.remove(id);
                }
                Some(id) => {
                    self.broker_configs.insert(*id, configs.clone());
                }
            },
            MetadataRecord::AllocateProducerIds { count, .. } => {
                if *count <= 0 {
                    return Err(Refusal::Invalid(format!("a block of {count} producer ids")));
                }
                result.producer_id_start = Some(self.next_producer_id);
                self.next_producer_id = self.next_producer_id.saturating_add(*count);
            }
            MetadataRecord::UpsertScramCredential {
                user,
                mechanism,
                credential,
            } => {
                self.scram_credentials
                    .entry(user.clone())
                    .or_default()
                    .insert(*mechanism, credential.clone());
            }
            MetadataRecord::CreateAcls { bindings } => {
                let acls = Arc::make_mut(&mut self.acls);
                for b in bindings {
                    acls.add(b);
                }
            }
            MetadataRecord::DeleteAcls { bindings } => {
                let acls = Arc::make_mut(&mut self.acls);
                for b in bindings {
                    acls.remove(b);
                }
            }
            MetadataRecord::RemoveScramCredential { user, mechanism } => {
                if let Some(m) = self.scram_credentials.get_mut(user) {
                    m.remove(mechanism);
                    if m.is_empty() {
                        self.scram_credentials.remove(user);
                    }
                }
            }
        }
        Ok(())
    }

    fn topic_mut(&mut self, id: Uuid) -> Result<&mut TopicImage, Refusal> {
        let name = self.names_by_id.get(&id).ok_or(Refusal::UnknownTopicId(id))?;
        let topic = self.topics.get_mut(name).ok_or(Refusal::UnknownTopicId(id))?;
        Ok(Arc::make_mut(topic))
    }

    /// Kafka's `PartitionRegistration.merge`, as a compare-and-set on the partition epoch.
    fn change_partition(&mut self, c: &PartitionChange) -> Result<(), Refusal> {
        let topic = self.topic_mut(c.topic_id)?;
        let p = usize::try_from(c.partition)
            .ok()
            .and_then(|i| topic.partitions.get_mut(i))
            .ok_or(Refusal::UnknownPartition(c.topic_id, c.partition))?;
        if p.partition_epoch != c.expected_partition_epoch {
            return Err(Refusal::InvalidUpdateVersion {
                topic_id: c.topic_id,
                partition: c.partition,
                expected: c.expected_partition_epoch,
                current: p.partition_epoch,
            });
        }
        let next = p.merge(c);
        check_registration(&next)?;
        *p = next;
        Ok(())
    }
}

/// The invariants of a registration: replicas distinct, the ISR within them and never empty
/// while there are replicas (Kafka keeps the last member), a leader from the ISR or none.
fn check_registration(p: &PartitionRegistration) -> Result<(), Refusal> {
    let mut seen = std::collections::HashSet::new();
    if !p.replicas.iter().all(|r| seen.insert(*r)) {
        return Err(Refusal::Invalid(format!("duplicate replicas {:?}", p.replicas)));
    }
    if !p.isr.iter().all(|r| p.replicas.contains(r)) {
        return Err(Refusal::Invalid(format!(
            "ISR {:?} not within replicas {:?}",
            p.isr, p.replicas
        )));
    }
    if !p.replicas.is_empty() && p.isr.is_empty() {
        return Err(Refusal::Invalid("an empty ISR".into()));
    }
    let moving = p.adding_replicas.iter().chain(&p.removing_replicas);
    if let Some(r) = moving.clone().find(|r| !p.replicas.contains(r)) {
        return Err(Refusal::Invalid(format!(
            "reassigned replica {r} not within {:?}",
            p.replicas
        )));
    }
    if p.adding_replicas.iter().any(|r| p.removing_replicas.contains(r)) {
        return Err(Refusal::Invalid("a replica both added and removed".into()));
    }
    if p.leader != NO_LEADER && !p.isr.contains(&p.leader) {
        return Err(Refusal::Invalid(format!(
            "leader {} outside the ISR {:?}",
            p.leader, p.isr
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::record::MetadataRecord as R;

    fn create(name: &str, id: Uuid, replicas: &[Vec<NodeId>]) -> MetadataCommand {
        MetadataCommand::one(R::CreateTopic {
            name: name.into(),
            id,
            partitions: replicas.iter().map(|r| PartitionRegistration::new(r.clone())).collect(),
            configs: BTreeMap::new(),
        })
    }

    #[test]
    fn topics_are_created_once_and_found_by_name_and_id() {
        let mut image = MetadataImage::default();
        let id = Uuid::new_v4();
        let r = image.apply(1, &create("t", id, &[vec![1, 2, 3], vec![2, 3, 1]]));
        assert_eq!(r.refused, None);
        let t = image.topic_by_id(id).cloned().unwrap();
        assert_eq!(
            (t.name.as_str(), t.partition_count(), t.replication_factor()),
            ("t", 2, 3)
        );
        assert_eq!(t.partition(1).map(|p| p.leader), Some(2));
        let again = image.apply(2, &create("t", Uuid::new_v4(), &[vec![1]]));
        assert_eq!(again.refused, Some(Refusal::TopicAlreadyExists("t".into())));
        assert_eq!(image.offset, 2, "a refused command still moves the offset");
        let r = image.apply(3, &MetadataCommand::one(R::RemoveTopic { topic_id: id }));
        assert_eq!(r.refused, None);
        assert!(image.topic("t").is_none() && image.topic_by_id(id).is_none());
    }

    #[test]
    fn partition_changes_are_compare_and_set_and_bump_epochs_as_kafka() {
        let mut image = MetadataImage::default();
        let id = Uuid::new_v4();
        image.apply(1, &create("t", id, &[vec![1, 2, 3]]));
        // An ISR shrink: the partition epoch moves, the leader epoch does not.
        let mut shrink = PartitionChange::new(id, 0, 0);
        shrink.isr = Some(vec![1, 2]);
        assert_eq!(
            image
                .apply(2, &MetadataCommand::one(R::ChangePartition(shrink.clone())))
                .refused,
            None
        );
        let p = image.topic("t").unwrap().partitions[0].clone();
        assert_eq!((p.isr, p.leader_epoch, p.partition_epoch), (vec![1, 2], 0, 1));
        // The same change again was decided on epoch 0: refused, nothing changes.
        let r = image.apply(3, &MetadataCommand::one(R::ChangePartition(shrink)));
        assert!(matches!(
            r.refused,
            Some(Refusal::InvalidUpdateVersion { current: 1, .. })
        ));
        // A new leader bumps both epochs.
        let mut elect = PartitionChange::new(id, 0, 1);
        elect.leader = Some(2);
        elect.isr = Some(vec![2]);
        assert_eq!(
            image.apply(4, &MetadataCommand::one(R::ChangePartition(elect))).refused,
            None
        );
        let p = &image.topic("t").unwrap().partitions[0];
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (2, 1, 2));
        // A leader outside the ISR is refused by every node alike.
        let mut bad = PartitionChange::new(id, 0, 2);
        bad.leader = Some(3);
        assert!(matches!(
            image.apply(5, &MetadataCommand::one(R::ChangePartition(bad))).refused,
            Some(Refusal::Invalid(_))
        ));
    }

    #[test]
    fn commands_apply_all_or_nothing() {
        let mut image = MetadataImage::default();
        let id = Uuid::new_v4();
        let mut cmd = create("t", id, &[vec![1]]);
        cmd.records.push(R::ChangePartition(PartitionChange::new(id, 7, 0)));
        let r = image.apply(1, &cmd);
        assert_eq!(r.refused, Some(Refusal::UnknownPartition(id, 7)));
        assert!(
            image.topic("t").is_none(),
            "the topic of a refused command is not created"
        );
    }

    #[test]
    fn brokers_register_fenced_at_their_offset_and_changes_need_that_epoch() {
        let mut image = MetadataImage::default();
        let reg = R::RegisterBroker {
            id: 2,
            incarnation_id: Uuid::new_v4(),
            endpoints: vec![],
            rack: None,
        };
        image.apply(10, &MetadataCommand::one(reg));
        assert_eq!(image.brokers[&2].epoch, 10);
        assert!(!image.is_live(2), "registered fenced");
        let unfence = |epoch| {
            MetadataCommand::one(R::BrokerChange {
                id: 2,
                epoch,
                fenced: Some(false),
                in_controlled_shutdown: None,
                log_dir_offline: None,
            })
        };
        assert_eq!(
            image.apply(11, &unfence(9)).refused,
            Some(Refusal::StaleBrokerEpoch(2, 9))
        );
        assert_eq!(image.apply(12, &unfence(10)).refused, None);
        assert!(image.is_live(2));
    }

    #[test]
    fn producer_id_blocks_never_overlap() {
        let mut image = MetadataImage::default();
        let alloc = |b| MetadataCommand::one(R::AllocateProducerIds { broker: b, count: 1000 });
        assert_eq!(image.apply(1, &alloc(1)).producer_id_start, Some(0));
        assert_eq!(image.apply(2, &alloc(2)).producer_id_start, Some(1000));
        assert_eq!(image.next_producer_id, 2000);
    }

    #[test]
    fn an_image_survives_a_snapshot_round_trip() {
        let mut image = MetadataImage::default();
        let id = Uuid::new_v4();
        image.apply(1, &create("t", id, &[vec![1]]));
        let json = serde_json::to_vec(&image).unwrap();
        let mut back: MetadataImage = serde_json::from_slice(&json).unwrap();
        back.reindex();
        assert_eq!(back, image);
        assert!(back.topic_by_id(id).is_some());
    }
}
