//! Readiness (`/ready`): the gateway can do its job, i.e. inventory answers
//! and RabbitMQ is connected and not blocking publishers with a memory or
//! disk alarm. `/health` and the body's shape are `common::health`'s.

use actix_web::{web, HttpRequest, HttpResponse};
use common::health::{ready_response, Check};
use common::request_id::RequestId;

use crate::broker::Broker;
use crate::proxy::Inventory;

pub async fn ready(
    req: HttpRequest,
    inventory: web::Data<Inventory>,
    broker: web::Data<Broker>,
) -> HttpResponse {
    let inventory = Check::up(inventory.is_up(&RequestId::of(&req).id).await);
    let rabbitmq = if !broker.is_connected() {
        Check::Down
    } else if broker.is_blocked() {
        Check::Blocked
    } else {
        Check::Ok
    };
    ready_response(&[("inventory", inventory), ("rabbitmq", rabbitmq)], ())
}
