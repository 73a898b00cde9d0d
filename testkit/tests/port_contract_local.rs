//! The storage ports' contract suite (`media_testkit::contract`) against the local adapters: redb and
//! files in a temporary directory.

media_testkit::port_contract_tests!(media_testkit::contract::local);
