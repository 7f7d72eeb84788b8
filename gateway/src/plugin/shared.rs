//! What the host imports of one plugin act on, shared by every instance and version of that
//! plugin: its name, the hub, its key-value namespace, auth profiles, counters, timers, and
//! the stream and storage backends.

use super::timers::Timers;
use crate::auth::Authenticator;
use crate::cluster::Cluster;
use crate::cluster::kv::PluginKv;
use crate::hub::Hub;
use crate::metrics::PluginMetrics;
use crate::storage::Storage;
use crate::streams::{StreamSink, Streams};
use arc_swap::ArcSwap;
use std::sync::{Arc, Weak};

/// The process-wide services a plugin is given when it is loaded.
#[derive(Clone)]
pub struct HostServices {
    /// Connections and topics.
    pub hub: Arc<Hub>,
    /// Publish and per-connection delivery across instances.
    pub cluster: Arc<Cluster>,
    /// Auth profiles for `verify-token`.
    pub auth: Arc<Authenticator>,
    /// Streams (`streams` imports).
    pub streams: Streams,
    /// Blob storage (`storage` imports).
    pub storage: Storage,
}

/// Host-side state of one plugin.
pub struct PluginShared {
    /// Plugin name.
    pub name: Arc<str>,
    /// Connections and topics.
    pub hub: Arc<Hub>,
    /// Publish and per-connection delivery across instances.
    pub cluster: Arc<Cluster>,
    /// Host-owned key-value namespace.
    pub kv: PluginKv,
    /// Auth profiles for `verify-token`; replaced when the config reloads.
    pub auth: ArcSwap<Authenticator>,
    /// Counters.
    pub metrics: PluginMetrics,
    /// Pending timers.
    pub timers: Arc<Timers>,
    /// Streams (`streams` imports).
    pub streams: Streams,
    /// Blob storage (`storage` imports).
    pub storage: Storage,
    /// Where the tailer delivers the plugin's bound streams (the plugin's slot).
    pub sink: Weak<dyn StreamSink>,
}

impl PluginShared {
    /// State for plugin `name`; fired timers and bound streams go to `sink`'s owner.
    pub fn new(
        name: &str,
        services: HostServices,
        timers: Timers,
        sink: Weak<dyn StreamSink>,
    ) -> Self {
        Self {
            name: Arc::from(name),
            hub: services.hub,
            kv: services.cluster.kv(name),
            cluster: services.cluster,
            auth: ArcSwap::new(services.auth),
            metrics: PluginMetrics::default(),
            timers: Arc::new(timers),
            streams: services.streams,
            storage: services.storage,
            sink,
        }
    }

    /// The hub key of a plugin topic (topics are namespaced per plugin).
    pub fn topic_key(&self, topic: &str) -> String {
        format!("{}\u{1f}{topic}", self.name)
    }
}

/// Splits a hub topic key (see [`PluginShared::topic_key`]) into the plugin name and the topic
/// the plugin knows; a key without a plugin part has an empty plugin name.
pub fn split_topic_key(key: &str) -> (&str, &str) {
    key.split_once('\u{1f}').unwrap_or(("", key))
}
