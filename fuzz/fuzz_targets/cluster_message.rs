//! What a node reads from Redis: the bytes as the subscriber's connection delivers them
//! (RESP), and as one message payload (the JSON envelope), applied to a node with peers.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    resound::fuzzing::cluster_payload(data);
});
