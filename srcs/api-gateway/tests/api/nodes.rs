//! A gateway that knows several RabbitMQ nodes (the high-availability
//! topology's `GATEWAY_RABBITMQ_HOST=a,b,c`) moves to a live one when its
//! node dies. Two relays to the one test broker stand for two nodes.

use crate::support::relay::Relay;
use crate::support::{config, rabbit, spawn_app, valid_order, wait_for, TestApp};
use actix_web::http::StatusCode;
use uuid::Uuid;

/// One order: its id if answered 200 (while the gateway moves between nodes,
/// any other answer means "not yet").
async fn order_accepted(gateway: &TestApp) -> Option<Uuid> {
    let reply = gateway.order(&valid_order()).await;
    match reply.status {
        StatusCode::OK => Some(Uuid::parse_str(reply.json()["order_id"].as_str()?).ok()?),
        _ => None,
    }
}

#[actix_web::test]
async fn orders_move_to_the_next_node_when_the_first_dies() {
    let vhost = rabbit::vhost();
    let first = Relay::start(rabbit::amqp_port(), true).await;
    // Down at first, so the first order can only go through the first node.
    let second = Relay::start(rabbit::amqp_port(), false).await;
    let mut settings = config("http://127.0.0.1:9", first.port, &vhost.name);
    settings.rabbitmq.host = format!("127.0.0.1:{},127.0.0.1:{}", first.port, second.port);
    let gateway = spawn_app(settings).await;
    let accepted = || order_accepted(&gateway);
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

/// The node list is a preference, tried from its start on every connect
/// (each HA VM lists its own node first): after the second node dies, the
/// gateway goes back to the first, not on to the third.
#[actix_web::test]
async fn every_reconnect_tries_the_nodes_in_their_listed_order() {
    let vhost = rabbit::vhost();
    let nodes = [
        Relay::start(rabbit::amqp_port(), true).await,
        Relay::start(rabbit::amqp_port(), true).await,
        Relay::start(rabbit::amqp_port(), true).await,
    ];
    let mut settings = config("http://127.0.0.1:9", nodes[0].port, &vhost.name);
    settings.rabbitmq.host = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect::<Vec<_>>()
        .join(",");
    let gateway = spawn_app(settings).await;
    let accepted = || order_accepted(&gateway);
    let relayed = || nodes.iter().map(Relay::relayed).collect::<Vec<_>>();

    let a = wait_for("an order through the first node", accepted).await;
    assert_eq!(relayed(), [1, 0, 0], "connections per node, all up");

    nodes[0].set_forward(false);
    nodes[0].cut();
    let b = wait_for("an order once the first node died", accepted).await;
    assert_eq!(relayed(), [1, 1, 0], "the first node down: the second");

    nodes[0].set_forward(true);
    nodes[1].set_forward(false);
    nodes[1].cut();
    let c = wait_for("an order once the second node died", accepted).await;
    assert_eq!(
        relayed(),
        [2, 1, 0],
        "the first node back, the second down: the first again"
    );

    let queued: Vec<Uuid> = rabbit::drain(&vhost.name)
        .await
        .iter()
        .map(|m| rabbit::order_of(m).order_id)
        .collect();
    assert_eq!(queued, vec![a, b, c], "each order queued once, in order");
}
