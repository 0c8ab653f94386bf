//! The card's integration tests, in one binary so that they run side by side: most of their
//! time is spent waiting on a real card (a timeout, a silence, a baud search), and one
//! process running many of them at once finishes in the time of the longest few instead of
//! the sum of all. Each file is what a user of one part checks; `common` starts cards.
//! `.cargo/config.toml` sets how many run at once (`RUST_TEST_THREADS`).

mod board_fixture;
mod common;
mod firmware_fixture;

mod access;
mod board_button;
mod board_clock;
mod board_init;
mod board_leds;
mod board_network;
mod board_restart;
mod board_watchdog;
mod cli_help;
mod config_fixtures;
mod console_menu;
mod console_serial;
mod console_ssh;
mod discovery;
mod firmware_image;
mod firmware_kill;
mod firmware_service;
mod firmware_upgrade;
mod gateway;
mod live;
mod mbtls;
mod one_session;
mod process;
mod protocol_props;
mod rs485;
mod service_stop;
mod sim;
mod store;
mod syslog;
mod throttle;
mod ups_events;
mod ups_history;
mod ups_polling;
mod web_accounts;
mod web_certs;
mod web_config_file;
mod web_firmware;
mod web_flood;
mod web_front;
mod web_home;
mod web_log_debug;
mod web_mbtls;
mod web_settings;
mod web_ups;
