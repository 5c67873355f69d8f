//! A generator of realistic ITCH 5.0 days, deterministic from a seed, for tests and
//! benchmarks: the session's system events, a stock directory, trading actions and other
//! administrative messages, then order flow — adds, executions, partial cancels, deletes,
//! replaces and trades — for `stocks` stocks, then the closing crosses and end of day.
//!
//! Order flow follows the shape of a real TotalView day (adds and deletes dominate,
//! executions are a few percent, most orders rest within a few ticks of the touch), over a
//! fixed mid price per stock, so books never cross. Every execute, cancel, delete and
//! replace refers to a live order, so a correct book builder never sees a mismatch.
//!
//! ```
//! use tickwire_feeds::itch::{GeneratorConfig, ItchGenerator};
//!
//! let config = GeneratorConfig { stocks: 2, messages: 100, seed: 7, ..Default::default() };
//! let day: Vec<_> = ItchGenerator::new(&config).collect();
//! assert_eq!(day, ItchGenerator::new(&config).collect::<Vec<_>>(), "same seed, same day");
//! assert_eq!(day[0].tag(), b'S');
//! ```

use std::collections::VecDeque;

use super::file::write_frame;
use super::messages::*;
use crate::synthetic::SplitMix64;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratorConfig {
    /// Seed. Default 42.
    pub seed: u64,
    /// Number of stocks (locate codes 1..=stocks). Default 8; at least 1, at most 65 535.
    pub stocks: u16,
    /// Order-flow messages between the market open and close. Default 100 000.
    pub messages: u64,
    /// Also emit the operational halt (`h`) and DLCR (`O`) messages, which ITCH parsers
    /// written before 2020 (such as the `itchy` crate 0.3) do not know. Default true.
    pub extended_types: bool,
    /// Timestamp of the first message, ns since midnight. Default 04:00, when Nasdaq's
    /// system hours start.
    pub start_ns: u64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            stocks: 8,
            messages: 100_000,
            extended_types: true,
            start_ns: 4 * 3_600 * 1_000_000_000,
        }
    }
}

/// A `Price(4)` tick: one cent (ITCH 5.0 §3: four implied decimals).
const TICK: u32 = 100;

/// Live orders per stock at most: adds turn into deletes above it, which keeps books a
/// realistic few dozen orders deep on each side.
const ORDERS_PER_STOCK: usize = 100;

#[derive(Debug, Clone)]
struct Stock {
    symbol: [u8; 8],
    /// Mid price, in ticks.
    mid: u32,
}

#[derive(Debug, Clone, Copy)]
struct LiveOrder {
    order_ref: u64,
    locate: u16,
    side: u8,
    price: u32,
    shares: u32,
}

/// An iterator over one generated day of ITCH messages (see the module docs).
#[derive(Debug, Clone)]
pub struct ItchGenerator {
    config: GeneratorConfig,
    rng: SplitMix64,
    stocks: Vec<Stock>,
    live: Vec<LiveOrder>,
    next_ref: u64,
    next_match: u64,
    now: u64,
    flow_left: u64,
    pending: VecDeque<MessageData>,
    closed: bool,
}

/// A symbol for stock `i`: four letters, `AAAA`, `AAAB`, ..., space-padded to 8.
fn symbol(i: u32) -> [u8; 8] {
    let mut s = *b"        ";
    let mut n = i;
    for c in s[..4].iter_mut().rev() {
        *c = b'A' + (n % 26) as u8;
        n /= 26;
    }
    s
}

impl ItchGenerator {
    /// A generator for `config`.
    pub fn new(config: &GeneratorConfig) -> Self {
        let mut rng = SplitMix64(config.seed);
        let count = config.stocks.max(1);
        let stocks = (0..u32::from(count))
            .map(|i| Stock {
                symbol: symbol(i),
                // $10.00 to $500.00.
                mid: 1_000 + rng.below(49_000) as u32,
            })
            .collect();
        let mut generator = Self {
            config: config.clone(),
            rng,
            stocks,
            live: Vec::with_capacity(usize::from(count) * ORDERS_PER_STOCK),
            next_ref: 1,
            next_match: 1,
            now: config.start_ns,
            flow_left: config.messages,
            pending: VecDeque::new(),
            closed: false,
        };
        generator.open();
        generator
    }

    fn header(&mut self, locate: u16) -> Header {
        self.now = (self.now + 1 + self.rng.below(2_000)).min(MAX_TIMESTAMP);
        Header {
            stock_locate: locate,
            tracking_number: self.rng.below(4) as u16,
            timestamp: self.now,
        }
    }

    fn system(&mut self, event_code: u8) -> MessageData {
        let header = self.header(0);
        MessageData::SystemEvent(SystemEventData { header, event_code })
    }

    /// The start of day: system events, directory, trading actions, market-wide messages.
    fn open(&mut self) {
        let mut day = vec![self.system(b'O'), self.system(b'S')];
        let mwcb = self.header(0);
        day.push(MessageData::MwcbDeclineLevel(MwcbDeclineLevelData {
            header: mwcb,
            level1: 4_200_000_000_000,
            level2: 3_900_000_000_000,
            level3: 3_600_000_000_000,
        }));
        for i in 0..self.stocks.len() {
            let locate = i as u16 + 1;
            let stock = self.stocks[i].symbol;
            let header = self.header(locate);
            day.push(MessageData::StockDirectory(StockDirectoryData {
                header,
                stock,
                market_category: b"QGSNP"[self.rng.below(5) as usize],
                financial_status: b'N',
                round_lot_size: 100,
                round_lots_only: b'N',
                issue_classification: b'C',
                issue_subtype: *b"C ",
                authenticity: b'P',
                short_sale_threshold: b'N',
                ipo_flag: b' ',
                luld_tier: b'1',
                etp_flag: b'N',
                etp_leverage_factor: 0,
                inverse_indicator: b'N',
            }));
        }
        for i in 0..self.stocks.len() {
            let locate = i as u16 + 1;
            let stock = self.stocks[i].symbol;
            let header = self.header(locate);
            day.push(MessageData::StockTradingAction(StockTradingActionData {
                header,
                stock,
                trading_state: b'T',
                reserved: b' ',
                reason: *b"    ",
            }));
            let header = self.header(locate);
            day.push(MessageData::MarketParticipantPosition(
                MarketParticipantPositionData {
                    header,
                    mpid: *b"NITE",
                    stock,
                    primary_market_maker: b'N',
                    market_maker_mode: b'N',
                    participant_state: b'A',
                },
            ));
        }
        day.push(self.system(b'Q'));
        self.pending.extend(day);
    }

    /// The end of day: closing crosses and system events.
    fn close(&mut self) {
        let mut day = Vec::new();
        for i in 0..self.stocks.len() {
            let locate = i as u16 + 1;
            let (stock, mid) = (self.stocks[i].symbol, self.stocks[i].mid);
            let header = self.header(locate);
            let match_number = self.match_number();
            day.push(MessageData::CrossTrade(CrossTradeData {
                header,
                shares: 10_000 + self.rng.below(1_000_000),
                stock,
                cross_price: mid * TICK,
                match_number,
                cross_type: b'C',
            }));
        }
        day.push(self.system(b'M'));
        day.push(self.system(b'E'));
        day.push(self.system(b'C'));
        self.pending.extend(day);
    }

    fn match_number(&mut self) -> u64 {
        let m = self.next_match;
        self.next_match += 1;
        m
    }

    fn lot(&mut self) -> u32 {
        if self.rng.below(10) == 0 {
            1 + self.rng.below(99) as u32 // odd lot
        } else {
            100 * (1 + self.rng.below(10) as u32)
        }
    }

    /// A price on `side` of stock `i`'s mid, mostly at or near the touch.
    fn price(&mut self, i: usize, side: u8) -> u32 {
        let spread = 1 + self.rng.below(12);
        let depth = self.rng.below(spread) as u32;
        let mid = self.stocks[i].mid;
        if side == b'B' {
            (mid - 1 - depth) * TICK
        } else {
            (mid + 1 + depth) * TICK
        }
    }

    fn add(&mut self) -> MessageData {
        let i = self.rng.below(self.stocks.len() as u64) as usize;
        let locate = i as u16 + 1;
        let side = if self.rng.below(2) == 0 { b'B' } else { b'S' };
        let price = self.price(i, side);
        let shares = self.lot();
        let order_ref = self.next_ref;
        self.next_ref += 1;
        self.live.push(LiveOrder {
            order_ref,
            locate,
            side,
            price,
            shares,
        });
        let header = self.header(locate);
        let stock = self.stocks[i].symbol;
        if self.rng.below(10) == 0 {
            MessageData::AddOrderMpid(AddOrderMpidData {
                header,
                order_ref,
                side,
                shares,
                stock,
                price,
                attribution: *b"NITE",
            })
        } else {
            MessageData::AddOrder(AddOrderData {
                header,
                order_ref,
                side,
                shares,
                stock,
                price,
            })
        }
    }

    /// One order-flow message.
    fn flow(&mut self) -> MessageData {
        let r = self.rng.below(1000);
        let full = self.live.len() >= self.stocks.len() * ORDERS_PER_STOCK;
        if self.live.is_empty() || (r < 420 && !full) {
            return self.add();
        }
        let index = self.rng.below(self.live.len() as u64) as usize;
        let order = self.live[index];
        let header = self.header(order.locate);
        match r {
            0..660 => {
                self.live.swap_remove(index);
                MessageData::OrderDelete(OrderDeleteData {
                    header,
                    order_ref: order.order_ref,
                })
            }
            660..760 => {
                let cancelled = 1 + self.rng.below(u64::from(order.shares)) as u32;
                self.reduce(index, cancelled);
                MessageData::OrderCancel(OrderCancelData {
                    header,
                    order_ref: order.order_ref,
                    cancelled_shares: cancelled,
                })
            }
            760..860 => {
                let i = usize::from(order.locate - 1);
                let price = self.price(i, order.side);
                let shares = self.lot();
                let new_order_ref = self.next_ref;
                self.next_ref += 1;
                self.live[index] = LiveOrder {
                    order_ref: new_order_ref,
                    price,
                    shares,
                    ..order
                };
                MessageData::OrderReplace(OrderReplaceData {
                    header,
                    original_order_ref: order.order_ref,
                    new_order_ref,
                    shares,
                    price,
                })
            }
            860..950 => {
                let executed = 1 + self.rng.below(u64::from(order.shares)) as u32;
                self.reduce(index, executed);
                let match_number = self.match_number();
                if r < 930 {
                    MessageData::OrderExecuted(OrderExecutedData {
                        header,
                        order_ref: order.order_ref,
                        executed_shares: executed,
                        match_number,
                    })
                } else {
                    MessageData::OrderExecutedWithPrice(OrderExecutedWithPriceData {
                        header,
                        order_ref: order.order_ref,
                        executed_shares: executed,
                        match_number,
                        printable: if self.rng.below(10) == 0 { b'N' } else { b'Y' },
                        execution_price: order.price,
                    })
                }
            }
            950..985 => {
                let i = usize::from(order.locate - 1);
                let shares = self.lot();
                let match_number = self.match_number();
                MessageData::Trade(TradeData {
                    header,
                    order_ref: 0,
                    side: b'B',
                    shares,
                    stock: self.stocks[i].symbol,
                    price: self.stocks[i].mid * TICK,
                    match_number,
                })
            }
            _ => self.rare(header, usize::from(order.locate - 1)),
        }
    }

    /// Removes `shares` from live order `index`, dropping it when none remain.
    fn reduce(&mut self, index: usize, shares: u32) {
        let order = &mut self.live[index];
        order.shares -= shares;
        if order.shares == 0 {
            self.live.swap_remove(index);
        }
    }

    /// One of the occasional messages: imbalance, RPII, Reg SHO, halts, crosses, busts.
    fn rare(&mut self, header: Header, i: usize) -> MessageData {
        let stock = self.stocks[i].symbol;
        let mid = self.stocks[i].mid * TICK;
        let kinds = if self.config.extended_types { 10 } else { 8 };
        match self.rng.below(kinds) {
            0 => MessageData::Noii(NoiiData {
                header,
                paired_shares: self.rng.below(100_000),
                imbalance_shares: self.rng.below(10_000),
                imbalance_direction: b"BSNO"[self.rng.below(4) as usize],
                stock,
                far_price: mid,
                near_price: mid + TICK,
                current_reference_price: mid,
                cross_type: b"OCH"[self.rng.below(3) as usize],
                price_variation: b'L',
            }),
            1 => MessageData::Rpii(RpiiData {
                header,
                stock,
                interest_flag: b"BSAN"[self.rng.below(4) as usize],
            }),
            2 => MessageData::RegSho(RegShoData {
                header,
                stock,
                reg_sho_action: b"012"[self.rng.below(3) as usize],
            }),
            3 => {
                let match_number = self.match_number();
                MessageData::CrossTrade(CrossTradeData {
                    header,
                    shares: self.rng.below(50_000),
                    stock,
                    cross_price: mid,
                    match_number,
                    cross_type: b'H',
                })
            }
            4 => MessageData::BrokenTrade(BrokenTradeData {
                header,
                match_number: 1 + self.rng.below(self.next_match),
            }),
            5 => MessageData::IpoQuotingPeriod(IpoQuotingPeriodData {
                header,
                stock,
                release_time: 36_000,
                release_qualifier: b'A',
                ipo_price: mid,
            }),
            6 => MessageData::LuldAuctionCollar(LuldAuctionCollarData {
                header,
                stock,
                reference_price: mid,
                upper_price: mid + mid / 20,
                lower_price: mid - mid / 20,
                extension: self.rng.below(3) as u32,
            }),
            7 => MessageData::MwcbStatus(MwcbStatusData {
                header: Header {
                    stock_locate: 0,
                    ..header
                },
                breached_level: b"123"[self.rng.below(3) as usize],
            }),
            8 => MessageData::OperationalHalt(OperationalHaltData {
                header,
                stock,
                market_code: b"QBX"[self.rng.below(3) as usize],
                action: b"HT"[self.rng.below(2) as usize],
            }),
            _ => MessageData::DlcrPriceDiscovery(DlcrPriceDiscoveryData {
                header,
                stock,
                open_eligibility: b'Y',
                minimum_allowable_price: mid - mid / 10,
                maximum_allowable_price: mid + mid / 10,
                near_execution_price: mid,
                near_execution_time: header.timestamp + 1_000_000_000,
                lower_price_range_collar: mid - mid / 20,
                upper_price_range_collar: mid + mid / 20,
            }),
        }
    }
}

impl Iterator for ItchGenerator {
    type Item = MessageData;

    fn next(&mut self) -> Option<MessageData> {
        if let Some(m) = self.pending.pop_front() {
            return Some(m);
        }
        if self.flow_left > 0 {
            self.flow_left -= 1;
            return Some(self.flow());
        }
        if self.closed {
            return None;
        }
        self.closed = true;
        self.close();
        self.pending.pop_front()
    }
}

/// A whole generated day as an ITCH file (length-prefixed frames, as in Nasdaq's samples).
pub fn generate_file(config: &GeneratorConfig) -> Result<Vec<u8>, EncodeError> {
    // ~36 bytes per message on average.
    let mut out = Vec::with_capacity(config.messages as usize * 36 + 4096);
    for message in ItchGenerator::new(config) {
        write_frame(&message, &mut out)?;
    }
    Ok(out)
}
