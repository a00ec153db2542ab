//! The configuration loader: a TOML config file, then (after the first NUL byte, if any) a
//! `.env` file, read and validated as at startup.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (file, dotenv) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let (Ok(file), Ok(dotenv)) = (std::str::from_utf8(file), std::str::from_utf8(dotenv)) else {
        return;
    };
    let _ = resound::fuzzing::config_file(file, dotenv);
});
