//! A gateway that knows several RabbitMQ nodes (the high-availability
//! topology's `GATEWAY_RABBITMQ_HOST=a,b,c`) moves to a live one when its
//! node dies. Two relays to the one test broker stand for two nodes.

use crate::support::relay::Relay;
use crate::support::{config, rabbit, spawn_app, valid_order, wait_for};
use actix_web::http::StatusCode;
use uuid::Uuid;

#[actix_web::test]
async fn orders_move_to_the_next_node_when_the_first_dies() {
    let vhost = rabbit::vhost();
    let first = Relay::start(rabbit::amqp_port(), true).await;
    // Down at first, so the first order can only go through the first node.
    let second = Relay::start(rabbit::amqp_port(), false).await;
    let mut settings = config("http://127.0.0.1:9", first.port, &vhost.name);
    settings.rabbitmq.host = format!("127.0.0.1:{},127.0.0.1:{}", first.port, second.port);
    let gateway = spawn_app(settings).await;

    let accepted = || async {
        let reply = gateway.order(&valid_order()).await;
        match reply.status {
            StatusCode::OK => Some(Uuid::parse_str(reply.json()["order_id"].as_str()?).ok()?),
            _ => None,
        }
    };
    let a = wait_for("an order through the first node", accepted).await;

    // The first node dies (its connections cut, new ones refused), the
    // second is up: only the second can take the next orders.
    second.set_forward(true);
    first.set_forward(false);
    first.cut();
    let b = wait_for("an order through the second node", accepted).await;
    let c = wait_for("another order", accepted).await;

    let queued: Vec<Uuid> = rabbit::drain(&vhost.name)
        .await
        .iter()
        .map(|m| rabbit::order_of(m).order_id)
        .collect();
    assert_eq!(queued, vec![a, b, c], "each order queued once, in order");
}
