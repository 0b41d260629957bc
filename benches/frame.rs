//! Frame encode and validate for batches of 1, 64 and 1024 records with
//! 64-byte commands.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use traft::frame::{self, Frame, Record, RecordBatch};
use traft::{LeaderId, TailBitmap};

fn batch(records: u64) -> RecordBatch {
    RecordBatch {
        records: (1_000_000..1_000_000 + records)
            .map(|lsn| Record {
                author: LeaderId::new(7, 2),
                lsn,
                cmd: vec![0x5a; 64],
                // Prefix below a barrier plus the previous writer of the key.
                deps: {
                    let mut deps = TailBitmap::prefix(999_000);
                    deps.insert(lsn - 3).unwrap();
                    deps
                },
            })
            .collect(),
    }
}

fn frames(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for records in [1u64, 64, 1024] {
        let batch = batch(records);
        let encoded = frame::encode(&batch).unwrap();
        group.throughput(Throughput::Bytes(encoded.len() as u64));
        group.bench_function(BenchmarkId::new("encode", records), |b| {
            b.iter(|| frame::encode(black_box(&batch)).unwrap())
        });
        group.bench_function(BenchmarkId::new("validate", records), |b| {
            b.iter(|| {
                let frame = Frame::decode(black_box(&encoded)).unwrap();
                frame.batch().unwrap().records().len()
            })
        });
        group.bench_function(BenchmarkId::new("encode+validate", records), |b| {
            b.iter(|| {
                let encoded = frame::encode(black_box(&batch)).unwrap();
                let frame = Frame::decode(&encoded).unwrap();
                frame.batch().unwrap().records().len()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, frames);
criterion_main!(benches);
