//! A sink the test hands the app in place of a real one (`TestAppBuilder::webhook_sink`,
//! `mps_sink`): it records every delivery it is given and answers as scripted.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use mediagate::processing::{Delivered, Delivery, DeliveryError, Sink};

#[derive(Default)]
pub struct RecordingSink {
    deliveries: Mutex<Vec<Delivery>>,
    answers: Mutex<VecDeque<DeliveryError>>,
}

impl RecordingSink {
    pub fn new() -> Arc<RecordingSink> {
        Arc::new(RecordingSink::default())
    }

    /// The next delivery fails with `error` (after the ones scripted before it).
    pub fn fail_next(&self, error: DeliveryError) {
        self.answers.lock().unwrap().push_back(error);
    }

    /// Every delivery this sink was given, failed ones too, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Sink for RecordingSink {
    async fn deliver(
        &self,
        _target: &mediagate::workflows::Sink,
        delivery: &Delivery,
    ) -> Result<Delivered, DeliveryError> {
        self.deliveries.lock().unwrap().push(delivery.clone());
        match self.answers.lock().unwrap().pop_front() {
            Some(error) => Err(error),
            None => Ok(Delivered {
                media_id: Some(format!("recorded-{}", delivery.trigger_id)),
                run_ids: Vec::new(),
            }),
        }
    }
}
