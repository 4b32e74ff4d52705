//! Topic administration (CreateTopics, DeleteTopics, CreatePartitions, AlterConfigs and
//! auto-creation): each is checked against the current image, proposed to the controller as
//! one command, and answered once this broker's replicas reflect it (the metadata listener
//! has applied the command's offset).
//!
//! A topic whose local replicas cannot be created (a full disk, too many open files) is
//! removed again and the creation answered with that error, so nothing is left behind.

use std::collections::BTreeMap;
use std::sync::Arc;

use uuid::Uuid;

use super::{validate_topic_name, Broker, NewTopic, MAX_PARTITIONS};
use crate::controller::image::TopicImage;
use crate::controller::placement;
use crate::controller::record::{MetadataCommand, MetadataRecord, PartitionRegistration};
use crate::error::BrokerError;

fn random_below(n: usize) -> usize {
    (Uuid::new_v4().as_u128() % n.max(1) as u128) as usize
}

impl Broker {
    /// Returns once this broker's replicas reflect metadata `offset`.
    pub async fn wait_local(&self, offset: u64) -> Result<(), BrokerError> {
        let mut rx = self.local_offset.clone();
        let reached = rx.wait_for(|applied| *applied >= offset).await.map(|_| ());
        match reached {
            Ok(()) => Ok(()),
            // The metadata listener stopped: the broker is shutting down.
            Err(_) => Err(BrokerError::ControllerUnavailable(
                "the broker is shutting down before applying the change".into(),
            )),
        }
    }

    fn take_local_failure(&self, id: Uuid) -> Option<BrokerError> {
        self.local_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id)
    }

    /// Replicas for `count` new partitions from `first` over the live brokers.
    fn place(&self, first: usize, count: usize, replication_factor: i16) -> Result<Vec<Vec<i32>>, BrokerError> {
        let image = self.metadata.image();
        let brokers: Vec<(i32, Option<&str>)> = image.live_brokers().map(|b| (b.id, b.rack.as_deref())).collect();
        let rf = usize::try_from(replication_factor).unwrap_or(0);
        let n = brokers.len();
        placement::place_on_racks(&brokers, first, count, rf, random_below(n), random_below(n)).ok_or_else(|| {
            BrokerError::InvalidReplicationFactor(format!(
                "Unable to replicate the partition {replication_factor} time(s): The target replication factor of \
                 {replication_factor} cannot be reached because only {n} broker(s) are registered."
            ))
        })
    }

    /// Kafka's checks of explicit assignments for `count` new partitions.
    fn check_assignments(&self, a: &[Vec<i32>], count: usize, replication_factor: i16) -> Result<(), BrokerError> {
        let image = self.metadata.image();
        if a.len() != count {
            return Err(BrokerError::InvalidReplicaAssignment(format!(
                "Increasing the number of partitions by {count} but {} assignments provided.",
                a.len()
            )));
        }
        for ids in a {
            let mut distinct = ids.clone();
            distinct.sort_unstable();
            distinct.dedup();
            if ids.is_empty() || distinct.len() != ids.len() {
                return Err(BrokerError::InvalidReplicaAssignment(format!(
                    "Duplicate or missing brokers in {ids:?}"
                )));
            }
            if ids.len() != usize::try_from(replication_factor).unwrap_or(0) {
                return Err(BrokerError::InvalidReplicaAssignment(format!(
                    "Inconsistent replication factor between partitions, partition 0 has {replication_factor} while \
                     the new partitions have {}.",
                    ids.len()
                )));
            }
            if let Some(b) = ids.iter().find(|b| !image.brokers.contains_key(*b)) {
                return Err(BrokerError::InvalidReplicaAssignment(format!(
                    "Unknown broker(s) in replica assignment: {b}."
                )));
            }
        }
        Ok(())
    }

    fn check_configs(&self, configs: &BTreeMap<String, String>) -> Result<(), BrokerError> {
        let mut check = self.config.log.clone();
        for (k, v) in configs {
            crate::config::apply_topic_config(&mut check, k, v)
                .map_err(|e| BrokerError::InvalidConfig(e.to_string()))?;
        }
        Ok(())
    }

    /// Creates a topic (or, with `validate_only`, checks that it could be created).
    pub async fn create_topic(&self, new: NewTopic, validate_only: bool) -> Result<Arc<TopicImage>, BrokerError> {
        validate_topic_name(&new.name)?;
        let image = self.metadata.image();
        if image.topic(&new.name).is_some() {
            return Err(BrokerError::TopicAlreadyExists(format!(
                "Topic '{}' already exists.",
                new.name
            )));
        }
        let partitions = match new.partitions {
            -1 => self.config.num_partitions,
            n if n >= 1 => n,
            n => {
                return Err(BrokerError::InvalidPartitions(format!(
                    "Number of partitions must be larger than 0, or -1 to use the default value. Got {n}"
                )))
            }
        };
        if image.partition_count().saturating_add(partitions as usize) > MAX_PARTITIONS {
            return Err(BrokerError::PolicyViolation(format!(
                "this cluster hosts at most {MAX_PARTITIONS} partitions"
            )));
        }
        let replication_factor = match new.replication_factor {
            -1 => self.config.default_replication_factor,
            n if n >= 1 => n,
            n => {
                return Err(BrokerError::InvalidReplicationFactor(format!(
                    "Replication factor must be larger than 0, or -1 to use the default value. Got {n}"
                )))
            }
        };
        let replicas = match new.assignments {
            Some(a) => a,
            None => self.place(0, partitions as usize, replication_factor)?,
        };
        self.check_configs(&new.configs)?;
        let topic = TopicImage {
            name: new.name,
            id: Uuid::new_v4(),
            partitions: replicas.into_iter().map(PartitionRegistration::new).collect(),
            configs: new.configs,
        };
        if validate_only {
            return Ok(Arc::new(topic));
        }
        let record = MetadataRecord::CreateTopic {
            name: topic.name.clone(),
            id: topic.id,
            partitions: topic.partitions.clone(),
            configs: topic.configs.clone(),
        };
        let written = self.metadata.write(MetadataCommand::one(record)).await?;
        self.wait_local(written.offset).await?;
        if let Some(e) = self.take_local_failure(topic.id) {
            // Undo the registration so the name is free to try again.
            let removed = self
                .metadata
                .write(MetadataCommand::one(MetadataRecord::RemoveTopic { topic_id: topic.id }))
                .await;
            if let Ok(r) = removed {
                let _ = self.wait_local(r.offset).await;
            }
            tracing::warn!(topic = %topic.name, error = %e, "creating topic failed; rolled back");
            return Err(e);
        }
        tracing::info!(topic = %topic.name, partitions, "created topic");
        Ok(self.metadata.topic_by_id(topic.id).unwrap_or_else(|| Arc::new(topic)))
    }

    /// Deletes a topic; its replicas (and every group's offsets of it) go as brokers apply it.
    pub async fn delete_topic(&self, name: &str) -> Result<Arc<TopicImage>, BrokerError> {
        let topic = self.metadata.topic(name).ok_or(BrokerError::UnknownTopicOrPartition)?;
        let written = self
            .metadata
            .write(MetadataCommand::one(MetadataRecord::RemoveTopic { topic_id: topic.id }))
            .await?;
        self.wait_local(written.offset).await?;
        tracing::info!(topic = %name, "deleted topic");
        Ok(topic)
    }

    /// Adds partitions to a topic (CreatePartitions).
    pub async fn add_partitions(
        &self,
        name: &str,
        count: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        let current = self.metadata.topic(name).ok_or(BrokerError::UnknownTopicOrPartition)?;
        let have = current.partition_count();
        if count < have {
            return Err(BrokerError::InvalidPartitions(format!(
                "Topic currently has {have} partitions, which is higher than the requested {count}."
            )));
        }
        if count == have {
            return Err(BrokerError::InvalidPartitions(format!(
                "Topic already has {count} partitions."
            )));
        }
        let replicas = match assignments {
            Some(a) => {
                self.check_assignments(&a, (count - have) as usize, current.replication_factor())?;
                a
            }
            None => self.place(have as usize, (count - have) as usize, current.replication_factor())?,
        };
        if validate_only {
            return Ok(());
        }
        let record = MetadataRecord::AddPartitions {
            topic_id: current.id,
            partitions: replicas.into_iter().map(PartitionRegistration::new).collect(),
        };
        let written = self.metadata.write(MetadataCommand::one(record)).await?;
        self.wait_local(written.offset).await?;
        match self.take_local_failure(current.id) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Replaces (or with `incremental`, edits) a topic's config overrides.
    pub async fn alter_topic_configs(
        &self,
        name: &str,
        change: impl FnOnce(&mut BTreeMap<String, String>),
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        let current = self.metadata.topic(name).ok_or(BrokerError::UnknownTopicOrPartition)?;
        let mut configs = current.configs.clone();
        change(&mut configs);
        self.check_configs(&configs)?;
        if validate_only {
            return Ok(());
        }
        let record = MetadataRecord::SetTopicConfigs {
            topic_id: current.id,
            configs,
        };
        let written = self.metadata.write(MetadataCommand::one(record)).await?;
        self.wait_local(written.offset).await?;
        Ok(())
    }

    /// Changes the dynamic configs of broker `id`, or the cluster-wide defaults (`None`), with
    /// `change` (or, with `validate_only`, checks that it could): written to the metadata, so
    /// every broker applies them.
    pub async fn alter_broker_configs(
        &self,
        id: Option<i32>,
        change: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), BrokerError>,
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        let image = self.metadata.image();
        let mut configs = image.broker_config_overrides(id).cloned().unwrap_or_default();
        change(&mut configs)?;
        let refused: Vec<&str> = configs
            .keys()
            .map(String::as_str)
            .filter(|k| !crate::config::DYNAMIC_BROKER_KEYS.contains(k))
            .collect();
        if !refused.is_empty() {
            return Err(BrokerError::InvalidRequest(format!(
                "Cannot update these configs dynamically: {refused:?}"
            )));
        }
        for (k, v) in &configs {
            crate::config::validate_dynamic_broker_config(k, v)
                .map_err(|e| BrokerError::InvalidConfig(e.to_string()))?;
        }
        if validate_only {
            return Ok(());
        }
        let record = MetadataRecord::SetBrokerConfigs { broker: id, configs };
        let written = self.metadata.write(MetadataCommand::one(record)).await?;
        self.wait_local(written.offset).await?;
        Ok(())
    }
}
