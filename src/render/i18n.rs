//! Languages: every word a person reads in a built-in message, in English and Simplified Chinese.
//!
//! The built-in templates hold layout only; the words come from here (through the view's
//! `headline`, `summary`, `labels`, ...). One template per channel therefore serves both
//! languages, and a custom template gets both for free by using `{{labels.*}}`.
//! DBS's own values (`running`, `CHECK_BINLOG_ON`, error texts) are never translated: they are
//! what the DBS console and its documentation show, so people can search for them.

use serde::Serialize;

use crate::event::Change;
use crate::snapshot::Scope;

/// The language of a channel's messages (`language = "zh-CN"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Language {
    /// English, the default.
    #[default]
    En,
    /// Simplified Chinese.
    ZhCn,
}

impl Language {
    /// Every supported language, for tests and error messages.
    pub const ALL: [Language; 2] = [Language::En, Language::ZhCn];

    /// Read a configured language tag. Case and `_`/`-` do not matter; `zh`, `zh-Hans` and
    /// `zh-CN` all mean Simplified Chinese, `en-US`/`en-GB` mean English.
    pub fn parse(tag: &str) -> Option<Language> {
        let tag = tag.trim().replace('_', "-").to_ascii_lowercase();
        match tag.as_str() {
            "en" | "en-us" | "en-gb" => Some(Language::En),
            "zh" | "zh-cn" | "zh-hans" | "zh-hans-cn" => Some(Language::ZhCn),
            _ => None,
        }
    }

    /// The canonical tag, as templates see it in `lang`.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::ZhCn => "zh-CN",
        }
    }
}

/// Fixed words for templates: `{{labels.watch}}` is `Watch` or `监控`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Labels {
    /// `Watch`: the configured watch name.
    pub watch: &'static str,
    /// `Status`.
    pub status: &'static str,
    /// `Progress`.
    pub progress: &'static str,
    /// `Duration`: how long the items of this event ran.
    pub duration: &'static str,
    /// `took`, before an item's duration.
    pub took: &'static str,
    /// `Observed`, before the time of the poll.
    pub observed: &'static str,
    /// `event`, before the event id.
    pub event: &'static str,
    /// `Error`, before an item's error text.
    pub error: &'static str,
    /// `Open in DBS console`: the console button or link.
    pub open_console: &'static str,
    /// `Checks` or `Steps` (pre-checks run checks, restores run steps).
    pub items: &'static str,
    /// `none`, for an empty value.
    pub none: &'static str,
    /// What follows a label: `: ` in English, `：` in Chinese.
    pub colon: &'static str,
}

impl Labels {
    /// The labels in `lang`, with the item noun for `scope`.
    pub fn new(lang: Language, scope: Scope) -> Labels {
        match lang {
            Language::En => Labels {
                watch: "Watch",
                status: "Status",
                progress: "Progress",
                duration: "Duration",
                took: "took",
                observed: "Observed",
                event: "event",
                error: "Error",
                open_console: "Open in DBS console",
                items: match scope {
                    Scope::Precheck => "Checks",
                    Scope::Restore => "Steps",
                },
                none: "—",
                colon: ": ",
            },
            Language::ZhCn => Labels {
                watch: "监控",
                status: "状态",
                progress: "进度",
                duration: "耗时",
                took: "耗时",
                observed: "观察时间",
                event: "事件",
                error: "错误",
                open_console: "在 DBS 控制台查看",
                items: match scope {
                    Scope::Precheck => "检查项",
                    Scope::Restore => "步骤",
                },
                none: "—",
                colon: "：",
            },
        }
    }
}

/// `Backup plan` / `备份计划`.
pub fn target_label(lang: Language, scope: Scope) -> &'static str {
    match (lang, scope) {
        (Language::En, Scope::Precheck) => "Backup plan",
        (Language::En, Scope::Restore) => "Restore task",
        (Language::ZhCn, Scope::Precheck) => "备份计划",
        (Language::ZhCn, Scope::Restore) => "恢复任务",
    }
}

/// `Pre-check` / `预检查`.
fn scope_label(lang: Language, scope: Scope) -> &'static str {
    match (lang, scope) {
        (Language::En, Scope::Precheck) => "Pre-check",
        (Language::En, Scope::Restore) => "Restore",
        (Language::ZhCn, Scope::Precheck) => "预检查",
        (Language::ZhCn, Scope::Restore) => "恢复任务",
    }
}

/// `check`/`checks`, `step`/`steps`; Chinese has no plural.
fn item_noun(lang: Language, scope: Scope, count: usize) -> &'static str {
    match (lang, scope, count == 1) {
        (Language::En, Scope::Precheck, true) => "check",
        (Language::En, Scope::Precheck, false) => "checks",
        (Language::En, Scope::Restore, true) => "step",
        (Language::En, Scope::Restore, false) => "steps",
        (Language::ZhCn, Scope::Precheck, _) => "项检查",
        (Language::ZhCn, Scope::Restore, _) => "个步骤",
    }
}

/// The Chinese measure word: checks are counted in 项, steps in 个.
fn measure(scope: Scope) -> &'static str {
    match scope {
        Scope::Precheck => "项",
        Scope::Restore => "个",
    }
}

/// `unknown` / `未知`.
pub fn unknown(lang: Language) -> &'static str {
    match lang {
        Language::En => "unknown",
        Language::ZhCn => "未知",
    }
}

/// What an event's headline needs to know.
pub struct HeadlineFacts<'a> {
    /// Pre-check or restore.
    pub scope: Scope,
    /// What happened.
    pub change: Change,
    /// Problem items among the event's items.
    pub problems: usize,
    /// Overall Status now.
    pub status: Option<&'a str>,
    /// Progress now.
    pub progress: Option<i64>,
    /// For item changes: the item's code, its previous and its new State.
    pub item: Option<(Option<&'a str>, Option<&'a str>, Option<&'a str>)>,
}

/// One-line statement of what happened: `Pre-check failed`, `预检查失败`.
pub fn headline(lang: Language, f: &HeadlineFacts<'_>) -> String {
    let what = scope_label(lang, f.scope);
    let warned = f.problems > 0;
    let unknown = unknown(lang);
    match (lang, f.change) {
        (_, Change::ItemChanged) => {
            let (code, before, now) = f.item.unwrap_or((None, None, None));
            let new = match lang {
                Language::En => "new",
                Language::ZhCn => "新增",
            };
            let noun = match (lang, f.scope) {
                (Language::En, Scope::Precheck) => "Check",
                (Language::En, Scope::Restore) => "Step",
                (Language::ZhCn, Scope::Precheck) => "检查项",
                (Language::ZhCn, Scope::Restore) => "步骤",
            };
            let code = code.unwrap_or(match lang {
                Language::En => "(unnamed)",
                Language::ZhCn => "（未命名）",
            });
            let colon = colon(lang);
            format!(
                "{noun} {code}{colon}{} → {}",
                before.unwrap_or(new),
                now.unwrap_or(unknown)
            )
        }
        (Language::En, Change::Started) => format!("{what} started"),
        (Language::ZhCn, Change::Started) => format!("{what}开始"),
        (Language::En, Change::Progress) => match f.progress {
            Some(p) => format!("{what} at {p}%"),
            None => format!("{what} progress changed"),
        },
        (Language::ZhCn, Change::Progress) => match f.progress {
            Some(p) => format!("{what}进度 {p}%"),
            None => format!("{what}进度变化"),
        },
        (Language::En, Change::Failed) => format!("{what} failed"),
        (Language::ZhCn, Change::Failed) => format!("{what}失败"),
        (Language::En, Change::Passed) if warned => format!("{what} passed with warnings"),
        (Language::En, Change::Passed) => format!("{what} passed"),
        (Language::ZhCn, Change::Passed) if warned => format!("{what}通过（有警告）"),
        (Language::ZhCn, Change::Passed) => format!("{what}通过"),
        (Language::En, Change::Completed) if warned => format!("{what} completed with warnings"),
        (Language::En, Change::Completed) => format!("{what} completed"),
        (Language::ZhCn, Change::Completed) if warned => format!("{what}完成（有警告）"),
        (Language::ZhCn, Change::Completed) => format!("{what}完成"),
        (Language::En, Change::StatusChanged) => {
            format!("{what} status changed to {}", f.status.unwrap_or(unknown))
        }
        (Language::ZhCn, Change::StatusChanged) => {
            format!("{what}状态变为 {}", f.status.unwrap_or(unknown))
        }
        (Language::En, Change::Paused) => format!("{what} paused"),
        (Language::ZhCn, Change::Paused) => format!("{what}已暂停"),
        (Language::En, Change::Retired) => format!("{what} no longer watched"),
        (Language::ZhCn, Change::Retired) => format!("{what}已停止监控"),
        (Language::En, Change::PollFailed) => "Polling DBS failed".to_string(),
        (Language::ZhCn, Change::PollFailed) => "DBS 查询失败".to_string(),
        (Language::En, Change::PollRecovered) => "Polling DBS works again".to_string(),
        (Language::ZhCn, Change::PollRecovered) => "DBS 查询已恢复".to_string(),
    }
}

/// `: ` in English, `：` in Chinese.
fn colon(lang: Language) -> &'static str {
    match lang {
        Language::En => ": ",
        Language::ZhCn => "：",
    }
}

/// `headline: watch`, except for item changes, whose headline already has a colon:
/// `Check CHECK_BINLOG_ON on orders-db: running → warning`.
pub fn title(lang: Language, change: Change, headline: &str, watch: &str) -> String {
    let colon = colon(lang);
    match (change, headline.split_once(colon)) {
        (Change::ItemChanged, Some((what, transition))) => match lang {
            Language::En => format!("{what} on {watch}{colon}{transition}"),
            Language::ZhCn => format!("{what}（{watch}）{colon}{transition}"),
        },
        _ => format!("{headline}{colon}{watch}"),
    }
}

/// What the summary needs to know.
pub struct SummaryFacts<'a> {
    /// Pre-check or restore.
    pub scope: Scope,
    /// What happened.
    pub change: Change,
    /// Problem items among the event's items.
    pub problems: usize,
    /// Items in the whole pre-check or restore.
    pub total: usize,
    /// Overall Status now.
    pub status: Option<&'a str>,
    /// Progress now.
    pub progress: Option<i64>,
    /// `40% → 70%`.
    pub progress_text: &'a str,
    /// `running → paused`.
    pub status_text: &'a str,
}

/// The second thing to read: `2 of 3 checks have problems`, `3 项检查中 2 项有问题`.
pub fn summary(lang: Language, f: &SummaryFacts<'_>) -> String {
    let total = f.total;
    let problems = f.problems;
    let noun = item_noun(lang, f.scope, total);
    let what = scope_label(lang, f.scope);
    match (lang, f.change) {
        (Language::En, Change::Started) if total > 0 => format!("{total} {noun} to run"),
        (Language::ZhCn, Change::Started) if total > 0 => format!("共 {total} {noun}待执行"),
        (_, Change::Started | Change::ItemChanged) => {
            let status = f.status.unwrap_or(match lang {
                Language::En => "status unknown",
                Language::ZhCn => "状态未知",
            });
            match (lang, f.progress) {
                (Language::En, Some(p)) => {
                    format!("{} {status}, {p}% done", what.to_lowercase())
                }
                (Language::En, None) => format!("{} {status}", what.to_lowercase()),
                (Language::ZhCn, Some(p)) => format!("{what} {status}，已完成 {p}%"),
                (Language::ZhCn, None) => format!("{what} {status}"),
            }
        }
        (Language::En, Change::Progress) => format!("progress {}", f.progress_text),
        (Language::ZhCn, Change::Progress) => format!("进度 {}", f.progress_text),
        (Language::En, Change::Failed) if problems == 0 => {
            format!("no {} reported an error", item_noun(lang, f.scope, 1))
        }
        (Language::ZhCn, Change::Failed) if problems == 0 => match f.scope {
            Scope::Precheck => "没有检查项报告错误".to_string(),
            Scope::Restore => "没有步骤报告错误".to_string(),
        },
        (Language::En, Change::Failed) => {
            let verb = if problems == 1 { "has" } else { "have" };
            format!("{problems} of {total} {noun} {verb} problems")
        }
        (Language::ZhCn, Change::Failed) => {
            format!("{total} {noun}中 {problems} {}有问题", measure(f.scope))
        }
        (Language::En, Change::Passed | Change::Completed) if problems == 0 => {
            let verb = match f.change {
                Change::Passed => "passed",
                _ => "finished",
            };
            format!("{total} of {total} {noun} {verb}")
        }
        (Language::ZhCn, Change::Passed | Change::Completed) if problems == 0 => {
            let verb = match f.change {
                Change::Passed => "全部通过",
                _ => "全部完成",
            };
            format!("{total} {noun}{verb}")
        }
        (Language::En, Change::Passed | Change::Completed) => {
            let verb = if problems == 1 { "has" } else { "have" };
            format!("{problems} of {total} {noun} {verb} warnings")
        }
        (Language::ZhCn, Change::Passed | Change::Completed) => {
            format!("{total} {noun}中 {problems} {}有警告", measure(f.scope))
        }
        (Language::En, Change::StatusChanged) => {
            format!("status {}, which DBS does not document", f.status_text)
        }
        (Language::ZhCn, Change::StatusChanged) => {
            format!("状态 {}（DBS 文档未列出此状态）", f.status_text)
        }
        (Language::En, Change::Paused) => match f.progress {
            Some(p) => format!("paused at {p}%"),
            None => "paused".to_string(),
        },
        (Language::ZhCn, Change::Paused) => match f.progress {
            Some(p) => format!("暂停于 {p}%"),
            None => "已暂停".to_string(),
        },
        (Language::En, Change::Retired) => "DBS no longer lists it, or it no longer matches its \
             [[discover]] filter; it is not polled any more"
            .to_string(),
        (Language::ZhCn, Change::Retired) => {
            "DBS 已不再列出它，或它不再符合 [[discover]] 的筛选条件；已停止轮询".to_string()
        }
        // The view replaces these with [`poll_summary`], which knows the number of failures.
        (Language::En, Change::PollFailed) => "polls of this watch are failing".to_string(),
        (Language::ZhCn, Change::PollFailed) => "此监控的查询持续失败".to_string(),
        (Language::En, Change::PollRecovered) => "polls of this watch work again".to_string(),
        (Language::ZhCn, Change::PollRecovered) => "此监控的查询已恢复".to_string(),
    }
}

/// The summary of a poll-health event: `3 polls in a row failed; …`, `连续 3 次查询失败；…`.
pub fn poll_summary(lang: Language, change: Change, failures: u32) -> String {
    let n = failures;
    match (lang, change) {
        (Language::En, Change::PollRecovered) => {
            let polls = if n == 1 { "poll" } else { "polls" };
            format!("the poll worked after {n} failed {polls} in a row; changes are seen again")
        }
        (Language::ZhCn, Change::PollRecovered) => {
            format!("连续 {n} 次查询失败后已恢复；变化会重新被发现")
        }
        (Language::En, _) => {
            let polls = if n == 1 { "poll" } else { "polls" };
            format!("{n} {polls} in a row failed; dbswatch cannot see changes until this is fixed")
        }
        (Language::ZhCn, _) => {
            format!("连续 {n} 次查询失败；修复之前 dbswatch 无法发现任何变化")
        }
    }
}

/// The labels of a poll health message's error part: (`Error`, `Failing since`) while polls
/// fail, (`Last error`, `Failed since`) once they work again.
pub fn poll_labels(lang: Language, change: Change) -> (&'static str, &'static str) {
    match (lang, change) {
        (Language::En, Change::PollRecovered) => ("Last error", "Failed since"),
        (Language::En, _) => ("Error", "Failing since"),
        (Language::ZhCn, Change::PollRecovered) => ("最后一次错误", "失败开始于"),
        (Language::ZhCn, _) => ("错误", "首次失败"),
    }
}

/// What a merged message says about its size: `This message covers 4 changes; the earlier
/// ones:`.
pub fn group_text(lang: Language, count: usize) -> String {
    match lang {
        Language::En => format!("This message covers {count} changes; the earlier ones:"),
        Language::ZhCn => format!("本消息汇总了 {count} 个变化，较早的变化："),
    }
}

/// `… and 3 more changes` below a shortened list of merged changes, `""` when none is hidden.
pub fn group_more(lang: Language, hidden: usize) -> String {
    match (lang, hidden) {
        (_, 0) => String::new(),
        (Language::En, 1) => "… and 1 more change".to_string(),
        (Language::En, n) => format!("… and {n} more changes"),
        (Language::ZhCn, n) => format!("……另有 {n} 个变化未显示"),
    }
}

/// The note that flapping repeats were not sent, `""` when none were muted.
pub fn muted_text(lang: Language, muted: usize) -> String {
    match (lang, muted) {
        (_, 0) => String::new(),
        (Language::En, 1) => "🔇 1 repeat muted: the same change came back within this \
                              channel's repeat_interval"
            .to_string(),
        (Language::En, n) => format!(
            "🔇 {n} repeats muted: the same changes came back within this channel's \
             repeat_interval"
        ),
        (Language::ZhCn, n) => {
            format!("🔇 已静默 {n} 次重复：相同的变化在本渠道的 repeat_interval 内再次出现")
        }
    }
}

/// `… and 4 more checks`, or `""` when nothing was left out.
pub fn more_items(lang: Language, scope: Scope, hidden: usize) -> String {
    if hidden == 0 {
        return String::new();
    }
    match lang {
        Language::En => format!("… and {hidden} more {}", item_noun(lang, scope, hidden)),
        Language::ZhCn => format!("……另有 {hidden} {}未显示", item_noun(lang, scope, hidden)),
    }
}

/// The visible note when the channel's own template failed and the built-in one stood in.
pub fn fallback_notice(lang: Language, reason: &str) -> String {
    match lang {
        Language::En => format!("⚠ custom template failed: {reason}; built-in template used"),
        Language::ZhCn => format!("⚠ 自定义模板渲染失败：{reason}；已改用内置模板"),
    }
}

/// The note on a `dbswatch test-channel` message.
pub fn test_notice(lang: Language) -> &'static str {
    match lang {
        Language::En => {
            "🧪 dbswatch test message: sent by `dbswatch test-channel` to check this channel; nothing happened to any backup plan"
        }
        Language::ZhCn => {
            "🧪 dbswatch 测试消息：由 `dbswatch test-channel` 发送，用于检查此通知渠道；没有任何备份计划发生变化"
        }
    }
}

/// The prefix that marks a test message's title.
pub fn test_prefix(lang: Language) -> &'static str {
    match lang {
        Language::En => "[TEST] ",
        Language::ZhCn => "【测试】",
    }
}

/// Human duration of a number of milliseconds: `850ms`, `42s`, `3m 5s`, `1h 0m 2s`,
/// `2d 1h 0m 0s`; in Chinese `850毫秒`, `3分5秒`, `1小时0分2秒`, `2天1小时0分0秒`.
/// `None` for a negative span (clock skew between BootTime and FinishTime).
pub fn format_duration(lang: Language, ms: i64) -> Option<String> {
    if ms < 0 {
        return None;
    }
    let (ms_unit, d_unit, h_unit, m_unit, s_unit, sep) = match lang {
        Language::En => ("ms", "d", "h", "m", "s", " "),
        Language::ZhCn => ("毫秒", "天", "小时", "分", "秒", ""),
    };
    if ms < 1000 {
        return Some(format!("{ms}{ms_unit}"));
    }
    let secs = ms / 1000;
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    let parts: Vec<String> = if d > 0 {
        vec![
            format!("{d}{d_unit}"),
            format!("{h}{h_unit}"),
            format!("{m}{m_unit}"),
            format!("{s}{s_unit}"),
        ]
    } else if h > 0 {
        vec![
            format!("{h}{h_unit}"),
            format!("{m}{m_unit}"),
            format!("{s}{s_unit}"),
        ]
    } else if m > 0 {
        vec![format!("{m}{m_unit}"), format!("{s}{s_unit}")]
    } else {
        vec![format!("{s}{s_unit}")]
    };
    Some(parts.join(sep))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_tags_are_read_leniently() {
        for tag in ["en", "EN", "en-US", "en_GB"] {
            assert_eq!(Language::parse(tag), Some(Language::En), "{tag}");
        }
        for tag in ["zh-CN", "zh_cn", "zh", "zh-Hans", " zh-CN "] {
            assert_eq!(Language::parse(tag), Some(Language::ZhCn), "{tag}");
        }
        for tag in ["fr", "", "zh-TW", "chinese"] {
            assert_eq!(Language::parse(tag), None, "{tag}");
        }
        assert_eq!(Language::ZhCn.as_str(), "zh-CN");
        assert_eq!(Language::default(), Language::En);
    }

    #[test]
    fn durations_in_both_languages() {
        let en = |ms| format_duration(Language::En, ms).unwrap();
        let zh = |ms| format_duration(Language::ZhCn, ms).unwrap();
        assert_eq!(en(0), "0ms");
        assert_eq!(en(850), "850ms");
        assert_eq!(en(42_000), "42s");
        assert_eq!(en(185_400), "3m 5s");
        assert_eq!(en(3_602_000), "1h 0m 2s");
        assert_eq!(en(90_000_000), "1d 1h 0m 0s");
        assert_eq!(zh(850), "850毫秒");
        assert_eq!(zh(185_400), "3分5秒");
        assert_eq!(zh(3_602_000), "1小时0分2秒");
        assert_eq!(zh(90_000_000), "1天1小时0分0秒");
        assert_eq!(format_duration(Language::ZhCn, -1), None);
    }

    #[test]
    fn more_items_counts_the_hidden_ones() {
        assert_eq!(more_items(Language::En, Scope::Precheck, 0), "");
        assert_eq!(
            more_items(Language::En, Scope::Precheck, 4),
            "… and 4 more checks"
        );
        assert_eq!(
            more_items(Language::En, Scope::Restore, 1),
            "… and 1 more step"
        );
        assert_eq!(
            more_items(Language::ZhCn, Scope::Precheck, 4),
            "……另有 4 项检查未显示"
        );
    }

    #[test]
    fn chinese_titles_keep_the_watch_and_the_transition() {
        let facts = HeadlineFacts {
            scope: Scope::Precheck,
            change: Change::ItemChanged,
            problems: 1,
            status: Some("running"),
            progress: Some(40),
            item: Some((Some("CHECK_BINLOG_ON"), Some("running"), Some("warning"))),
        };
        let h = headline(Language::ZhCn, &facts);
        assert_eq!(h, "检查项 CHECK_BINLOG_ON：running → warning");
        assert_eq!(
            title(Language::ZhCn, Change::ItemChanged, &h, "orders-db"),
            "检查项 CHECK_BINLOG_ON（orders-db）：running → warning"
        );
        let failed = HeadlineFacts {
            change: Change::Failed,
            item: None,
            ..facts
        };
        let h = headline(Language::ZhCn, &failed);
        assert_eq!(h, "预检查失败");
        assert_eq!(
            title(Language::ZhCn, Change::Failed, &h, "orders-db"),
            "预检查失败：orders-db"
        );
    }
}
