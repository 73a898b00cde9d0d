//! The platform's events on an EventBridge bus (`ports::EventSink`): one `PutEvents` entry per event,
//! `source` `media-upload`, `detail-type` and `detail` from `domain::events`. The cleanup and events
//! functions publish here (template.yaml: `EventBusName`, `events:PutEvents` on that bus only); the
//! request path never does (see `media_events`).

use async_trait::async_trait;
use aws_sdk_eventbridge::error::DisplayErrorContext;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use crate::domain::events::{PlatformEvent, SOURCE};
use crate::ports::{EventSink, Undelivered};

/// PutEvents takes at most 10 entries per call.
const MAX_ENTRIES: usize = 10;

pub struct EventBus {
    client: aws_sdk_eventbridge::Client,
    /// The bus's name or ARN.
    bus: String,
}

impl EventBus {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> Self {
        EventBus {
            client,
            bus: bus.into(),
        }
    }

    /// A client from the environment's SDK settings (`AWS_ENDPOINT_URL` etc.) for `bus`.
    pub async fn from_env(bus: impl Into<String>) -> Self {
        let sdk = super::client::sdk_config().await;
        Self::new(aws_sdk_eventbridge::Client::new(&sdk), bus)
    }

    fn entry(&self, event: &PlatformEvent) -> PutEventsRequestEntry {
        PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(SOURCE)
            .detail_type(event.detail_type())
            .detail(event.detail.to_string())
            .build()
    }
}

#[async_trait]
impl EventSink for EventBus {
    /// In calls of up to 10 entries, in order; stops at the first entry EventBridge did not take
    /// (a failed call, or an entry it answered with an error code) and names it.
    async fn publish(&self, events: &[PlatformEvent]) -> Result<(), Undelivered> {
        for (n, batch) in events.chunks(MAX_ENTRIES).enumerate() {
            let offset = n * MAX_ENTRIES;
            let out = self
                .client
                .put_events()
                .set_entries(Some(batch.iter().map(|e| self.entry(e)).collect()))
                .send()
                .await
                .map_err(|e| Undelivered {
                    first: offset,
                    reason: format!("PutEvents: {}", DisplayErrorContext(e)),
                })?;
            if out.failed_entry_count() > 0 {
                let entries = out.entries();
                let (i, failed) = entries
                    .iter()
                    .enumerate()
                    .find(|(_, e)| e.error_code().is_some())
                    .map(|(i, e)| (i, Some(e)))
                    .unwrap_or((0, None));
                return Err(Undelivered {
                    first: offset + i,
                    reason: format!(
                        "PutEvents refused {} of {} entries, first: {} {}",
                        out.failed_entry_count(),
                        batch.len(),
                        failed.and_then(|e| e.error_code()).unwrap_or("?"),
                        failed.and_then(|e| e.error_message()).unwrap_or("")
                    ),
                });
            }
        }
        Ok(())
    }
}
