//! The enrichment example's topology, shared by the example and its tests: orders joined
//! with the customer each names, as the customers table stands when the order arrives.
//!
//! Orders are keyed by order id, their value JSON naming the customer
//! (`{"customer":"c1","item":"book","amount":12.5}`); customers are a table keyed by
//! customer id, their value JSON (`{"name":"Ada","tier":"gold"}`). The customers are a
//! global table: every instance holds all of them, so the orders need no repartitioning
//! whatever their keys. An order naming no known customer is written with `"customer":
//! null` (a left join), so that nothing is lost.

use runnel_streams::{
    Consumed, JsonSerde, Nullable, Produced, StreamsBuilder, StreamsError, StringSerde, Topology,
};
use serde_json::Value;

/// The customer an order names, `""` for none.
fn customer_of(order: &Value) -> String {
    order["customer"].as_str().unwrap_or_default().to_owned()
}

/// Joins topic `orders` with the customers of topic `customers` into topic `output`: each
/// order, keyed by order id, with `"customer"` replaced by the customer's record (with its
/// id) or null.
pub(crate) fn enrich_orders(
    orders: &str,
    customers: &str,
    output: &str,
) -> Result<Topology, StreamsError> {
    let builder = StreamsBuilder::new();
    let customers = builder.global_table(
        customers,
        Consumed::with(StringSerde, JsonSerde::<Value>::new()),
        Some("customers"),
    );
    builder
        .stream(
            orders,
            Consumed::with(Nullable(StringSerde), JsonSerde::<Value>::new()),
        )
        .left_join_global(
            &customers,
            |_, order: &Value| customer_of(order),
            |order: &Value, customer: Option<&Value>| {
                let mut enriched = order.clone();
                enriched["customer"] = match customer {
                    Some(customer) => {
                        let mut customer = customer.clone();
                        customer["id"] = Value::String(customer_of(order));
                        customer
                    }
                    None => Value::Null,
                };
                enriched
            },
        )
        .to(
            output,
            Produced::with(Nullable(StringSerde), JsonSerde::<Value>::new()),
        );
    builder.build()
}
