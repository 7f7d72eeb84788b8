//! A misbehaving plugin for the fault-isolation tests (`tests/faults.rs`).
//!
//! Text frames are commands:
//! - `trap`: panics; with `panic = "abort"` this is a wasm `unreachable` trap.
//! - `loop`: spins forever; only the host's epoch deadline (`call_timeout_ms`) can stop it.
//! - `oom`: allocates until the instance's memory limit refuses to grow, which aborts.
//!
//! Every other frame (text or binary) is echoed back unchanged to its sender.

use plugin_sdk::{Frame, Plugin, export_plugin, host};

struct Faulty;

impl Plugin for Faulty {
    fn on_frame(conn: u64, _attachment: Vec<u8>, frame: Frame) {
        if let Frame::Text(text) = &frame {
            match text.as_str() {
                "trap" => trap(),
                "loop" => spin_forever(),
                "oom" => exhaust_memory(),
                _ => {}
            }
        }
        let _ = host::send(conn, &frame);
    }
}

fn trap() -> ! {
    panic!("faulty plugin: trap requested");
}

fn spin_forever() -> ! {
    let mut counter: u64 = 0;
    loop {
        // black_box keeps the loop observable so it cannot be optimised away.
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

fn exhaust_memory() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // Touch every page so the memory is really committed.
        let chunk = vec![0xA5u8; 1 << 20];
        hoard.push(std::hint::black_box(chunk));
    }
}

export_plugin!(Faulty);
