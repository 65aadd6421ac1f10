//! Produce a record and read it back with a consumer group.
//!
//! Start a broker (`cargo run --release -- server`), then:
//! `cargo run -p runnel-client --example quickstart`

use std::time::Duration;

use runnel_client::{Consumer, ConsumerConfig, ProduceRecord, Producer, ProducerConfig};

#[tokio::main]
async fn main() -> runnel_client::Result<()> {
    let producer = Producer::connect(ProducerConfig::new("127.0.0.1:9092")).await?;
    let delivery = producer
        .send(ProduceRecord::new("quickstart").key("42").value("hello"))
        .await?;
    println!("written at offset {}", delivery.await?.offset);
    producer.close().await?;

    let consumer =
        Consumer::connect(ConsumerConfig::new("127.0.0.1:9092").group("quickstart")).await?;
    consumer.subscribe(&["quickstart"]).await?;
    for record in consumer.poll(Duration::from_secs(5)).await? {
        println!("{}@{}: {:?}", record.partition, record.offset, record.value);
    }
    consumer.commit().await?;
    consumer.close().await
}
