//! A broker for the listener tests (TLS, SASL): started in this process with `overrides`
//! (`log.dirs` and `metrics.listener` added), stopped with [`TestBroker::stop`].
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tokio::net::TcpStream;

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct TestBroker {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _data: tempfile::TempDir,
}

impl TestBroker {
    /// Starts the broker and returns once `probe_port` accepts a connection (that connection
    /// is returned too).
    pub async fn start(
        mut overrides: Vec<String>,
        probe_port: u16,
    ) -> Result<(TestBroker, TcpStream), Box<dyn std::error::Error + Send + Sync>> {
        let data = tempfile::tempdir()?;
        overrides.push(format!("log.dirs={}", data.path().display()));
        overrides.push("metrics.listener=".into());
        let config = crate::config::BrokerConfig::load(None, &overrides)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(crate::broker::run_on(
            config,
            crate::broker::Listen::Config,
            async move {
                let _ = stopped.await;
            },
        ));
        for _ in 0..100 {
            if let Ok(c) = TcpStream::connect(("127.0.0.1", probe_port)).await {
                return Ok((
                    TestBroker {
                        stop,
                        task,
                        _data: data,
                    },
                    c,
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err("broker did not listen".into())
    }

    /// Stops it cleanly; its error, if it failed.
    pub async fn stop(self) -> TestResult {
        let _ = self.stop.send(());
        self.task.await??;
        Ok(())
    }
}
