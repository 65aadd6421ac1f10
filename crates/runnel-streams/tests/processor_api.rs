//! The processor API, run by the test driver: a processor with a state store, forwarding
//! records, and punctuations on stream time and on the wall clock.

use runnel_streams::{
    Consumed, I64Serde, Nullable, Processor, ProcessorContext, Produced, PunctuationType, Record,
    StoreHandle, StreamsBuilder, StreamsError, StringSerde, TestInputTopic, TestOutputTopic,
    TopologyTestDriver,
};

/// Counts each key's records in its store and, on each punctuation, writes every count out,
/// stamped with the punctuation's time.
struct CountAndReport {
    store: StoreHandle<String, i64>,
    every_ms: i64,
    kind: PunctuationType,
}

impl Processor<String, String, String, i64> for CountAndReport {
    fn init(
        &mut self,
        context: &mut ProcessorContext<'_, String, i64>,
    ) -> Result<(), StreamsError> {
        context.schedule(self.every_ms, self.kind);
        Ok(())
    }

    fn process(
        &mut self,
        record: Record<String, String>,
        context: &mut ProcessorContext<'_, String, i64>,
    ) -> Result<(), StreamsError> {
        let count = context.get(&self.store, &record.key)?.unwrap_or(0) + 1;
        context.put(&self.store, &record.key, Some(&count));
        Ok(())
    }

    fn punctuate(
        &mut self,
        time: i64,
        _kind: PunctuationType,
        context: &mut ProcessorContext<'_, String, i64>,
    ) -> Result<(), StreamsError> {
        for (key, count) in context.entries(&self.store)? {
            context.forward(Record::new(key, count, time))?;
        }
        Ok(())
    }
}

fn driver(kind: PunctuationType) -> TopologyTestDriver {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .process(
            move || CountAndReport {
                store: StoreHandle::new("counts", StringSerde, I64Serde),
                every_ms: 10,
                kind,
            },
            &["counts"],
        )
        .map_values(Some)
        .to("report", Produced::with(StringSerde, Nullable(I64Serde)));
    let topology = builder.build().expect("valid");
    assert_eq!(topology.store_names(), ["counts"]);
    TopologyTestDriver::new(&topology).expect("starts")
}

fn send(driver: &mut TopologyTestDriver, key: &str, timestamp: i64) {
    let input = TestInputTopic::new("in", StringSerde, StringSerde);
    driver
        .pipe_input(&input, key.to_owned(), String::new(), timestamp)
        .expect("piped");
}

fn report(driver: &mut TopologyTestDriver) -> Vec<(String, i64, i64)> {
    driver
        .read_all_output(&TestOutputTopic::new(
            "report",
            StringSerde,
            Nullable(I64Serde),
        ))
        .expect("read")
        .into_iter()
        .map(|record| (record.key, record.value.expect("a count"), record.timestamp))
        .collect()
}

#[test]
fn stream_time_punctuations_fire_as_records_move_stream_time_once_per_jump() {
    let mut driver = driver(PunctuationType::StreamTime);
    send(&mut driver, "a", 100);
    assert_eq!(
        report(&mut driver),
        [("a".to_owned(), 1, 100)],
        "the first record starts the schedule"
    );
    send(&mut driver, "b", 105);
    assert!(report(&mut driver).is_empty(), "not due before 110");
    send(&mut driver, "a", 137);
    assert_eq!(
        report(&mut driver),
        [("a".to_owned(), 2, 137), ("b".to_owned(), 1, 137)],
        "once, however many intervals the jump spans"
    );
    send(&mut driver, "a", 139);
    assert!(report(&mut driver).is_empty(), "next due at 140");
    send(&mut driver, "a", 120);
    assert!(
        report(&mut driver).is_empty(),
        "an older record does not move stream time"
    );
}

#[test]
fn wall_clock_punctuations_fire_without_records() {
    let mut driver = driver(PunctuationType::WallClockTime);
    send(&mut driver, "a", 5);
    driver.advance_wall_clock_time(9).expect("advanced");
    assert!(report(&mut driver).is_empty());
    driver.advance_wall_clock_time(1).expect("advanced");
    assert_eq!(report(&mut driver), [("a".to_owned(), 1, 10)]);
    driver.advance_wall_clock_time(25).expect("advanced");
    assert_eq!(report(&mut driver), [("a".to_owned(), 1, 35)]);
}
