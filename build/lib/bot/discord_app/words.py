"""The bot's own words (answers, errors, footers, buttons) in English, Simplified and
Traditional Chinese, chosen by the locale of the user's Discord client.

`say(locale, key, **values)` gives the text for `key` in that locale, English where there is
no translation; a `key` that is not in the catalogue is taken as English text already (the
operators' commands and the forms' own explanations speak English only).
"""

from __future__ import annotations

import discord

ENGLISH, SIMPLIFIED, TRADITIONAL = "en", "zh-CN", "zh-TW"

# Discord's locales for Chinese: zh-CN for the mainland's simplified script, zh-TW for the
# traditional one (Discord has no zh-HK).
_LANGUAGES = {"zh-CN": SIMPLIFIED, "zh-TW": TRADITIONAL}

WORDS: dict[str, dict[str, str]] = {
    "writing": {
        ENGLISH: "✍️ writing…",
        SIMPLIFIED: "✍️ 正在写…",
        TRADITIONAL: "✍️ 正在寫…",
    },
    "again": {ENGLISH: "Again", SIMPLIFIED: "再写一首", TRADITIONAL: "再寫一首"},
    "continue": {ENGLISH: "Continue", SIMPLIFIED: "接着写", TRADITIONAL: "接著寫"},
    "footer": {
        ENGLISH: "{style} {version}{form}{script} · temperature {temperature} · seed {seed}",
        SIMPLIFIED: "{style} {version}{form}{script} · 温度 {temperature} · 种子 {seed}",
        TRADITIONAL: "{style} {version}{form}{script} · 溫度 {temperature} · 種子 {seed}",
    },
    "about-line": {
        ENGLISH: "about {theme}: {plan}",
        SIMPLIFIED: "主题 {theme}：{plan}",
        TRADITIONAL: "主題 {theme}：{plan}",
    },
    "not-live": {
        ENGLISH: "Written with {live}: {old} is no longer live.",
        SIMPLIFIED: "由 {live} 写成：{old} 已不再使用。",
        TRADITIONAL: "由 {live} 寫成：{old} 已不再使用。",
    },
    "attached": {
        ENGLISH: "The whole poem ({count:,} characters) is attached as {name}.",
        SIMPLIFIED: "全诗（{count:,} 字）见附件 {name}。",
        TRADITIONAL: "全詩（{count:,} 字）見附件 {name}。",
    },
    "unknown-field": {
        ENGLISH: "Not in this style's alphabet",
        SIMPLIFIED: "此风格不认识的字",
        TRADITIONAL: "此風格不認識的字",
    },
    "unknown-value": {
        ENGLISH: "{chars} (left out of what the model read)",
        SIMPLIFIED: "{chars}（模型读时略去）",
        TRADITIONAL: "{chars}（模型讀時略去）",
    },
    "relaxed-field": {
        ENGLISH: "Rules bent to finish it",
        SIMPLIFIED: "为写完而放宽的规则",
        TRADITIONAL: "為寫完而放寬的規則",
    },
    "cut-by-restart": {
        ENGLISH: "I restarted before this poem was finished; ask again in a minute.",
        SIMPLIFIED: "这首诗还没写完我就重启了，请一分钟后再试。",
        TRADITIONAL: "這首詩還沒寫完我就重啟了，請一分鐘後再試。",
    },
    "busy": {
        ENGLISH: "I'm busy writing other poems; try again in {seconds} s.",
        SIMPLIFIED: "我正忙着写别的诗，请 {seconds} 秒后再试。",
        TRADITIONAL: "我正忙著寫別的詩，請 {seconds} 秒後再試。",
    },
    "cooldown": {
        ENGLISH: "You can ask for another poem in {seconds} s.",
        SIMPLIFIED: "请 {seconds} 秒后再要下一首。",
        TRADITIONAL: "請 {seconds} 秒後再要下一首。",
    },
    "channel-full": {
        ENGLISH: "{count} poems are being written in this channel; try again in {seconds} s.",
        SIMPLIFIED: "这个频道正在写 {count} 首诗，请 {seconds} 秒后再试。",
        TRADITIONAL: "這個頻道正在寫 {count} 首詩，請 {seconds} 秒後再試。",
    },
    "no-styles": {
        ENGLISH: "No styles are loaded right now; ask the bot's operators.",
        SIMPLIFIED: "现在没有载入任何风格，请联系机器人的管理员。",
        TRADITIONAL: "現在沒有載入任何風格，請聯絡機器人的管理員。",
    },
    "no-such-style": {
        ENGLISH: "There is no style named {name}. Styles: {known}.",
        SIMPLIFIED: "没有名为 {name} 的风格。现有风格：{known}。",
        TRADITIONAL: "沒有名為 {name} 的風格。現有風格：{known}。",
    },
    "style-removed": {
        ENGLISH: "The style {name} was just removed; pick another.",
        SIMPLIFIED: "风格 {name} 刚被移除，请另选一个。",
        TRADITIONAL: "風格 {name} 剛被移除，請另選一個。",
    },
    "prompt-too-long": {
        ENGLISH: "The prompt can be at most {limit} characters.",
        SIMPLIFIED: "开头最多 {limit} 个字。",
        TRADITIONAL: "開頭最多 {limit} 個字。",
    },
    "bad-length": {
        ENGLISH: "Length must be between 1 and {limit} characters.",
        SIMPLIFIED: "长度须在 1 到 {limit} 个字之间。",
        TRADITIONAL: "長度須在 1 到 {limit} 個字之間。",
    },
    "bad-temperature": {
        ENGLISH: "Temperature must be between 0 and {limit}.",
        SIMPLIFIED: "温度须在 0 到 {limit} 之间。",
        TRADITIONAL: "溫度須在 0 到 {limit} 之間。",
    },
    "bad-seed": {
        ENGLISH: "The seed must be between 0 and {limit}.",
        SIMPLIFIED: "种子须在 0 到 {limit} 之间。",
        TRADITIONAL: "種子須在 0 到 {limit} 之間。",
    },
    "cannot-write": {
        ENGLISH: "I can't write that: {reason}.",
        SIMPLIFIED: "这首写不了：{reason}。",
        TRADITIONAL: "這首寫不了：{reason}。",
    },
    "form-refused": {
        ENGLISH: "{reason}",
        SIMPLIFIED: "这个形式写不了：{reason}",
        TRADITIONAL: "這個形式寫不了：{reason}",
    },
    "poem-forgotten": {
        ENGLISH: "I no longer have this poem's options, so its buttons cannot write on; "
        "use /poem instead.",
        SIMPLIFIED: "这首诗的选项已不在了，按钮无法再写；请改用 /poem。",
        TRADITIONAL: "這首詩的選項已不在了，按鈕無法再寫；請改用 /poem。",
    },
    "poem-unavailable": {
        ENGLISH: "I can't read this poem's options right now (the settings database is "
        "unavailable); try again later.",
        SIMPLIFIED: "现在读不到这首诗的选项（设置数据库不可用），请稍后再试。",
        TRADITIONAL: "現在讀不到這首詩的選項（設定資料庫不可用），請稍後再試。",
    },
    "empty-message": {
        ENGLISH: "That message has no text {style} can write from (it knows none of its "
        "characters).",
        SIMPLIFIED: "这条消息里没有 {style} 认识的字，无法从它写起。",
        TRADITIONAL: "這條訊息裡沒有 {style} 認識的字，無法從它寫起。",
    },
    "from-message": {
        ENGLISH: "From {author}'s message",
        SIMPLIFIED: "写自 {author} 的消息",
        TRADITIONAL: "寫自 {author} 的訊息",
    },
    "continued": {
        ENGLISH: "Continued",
        SIMPLIFIED: "续写",
        TRADITIONAL: "續寫",
    },
    "went-wrong": {
        ENGLISH: "Something went wrong on my side; the operators can see it in the log.",
        SIMPLIFIED: "我这边出了问题，管理员可以在日志里看到。",
        TRADITIONAL: "我這邊出了問題，管理員可以在日誌裡看到。",
    },
    "bad-value": {
        ENGLISH: "That value doesn't fit the option: {value}",
        SIMPLIFIED: "这个值不符合选项：{value}",
        TRADITIONAL: "這個值不符合選項：{value}",
    },
    "not-here": {
        ENGLISH: "You can't use this command here.",
        SIMPLIFIED: "这里不能用这个命令。",
        TRADITIONAL: "這裡不能用這個命令。",
    },
    "servers-only": {
        ENGLISH: "Channel settings exist only in servers.",
        SIMPLIFIED: "只有服务器里的频道才有设置。",
        TRADITIONAL: "只有伺服器裡的頻道才有設定。",
    },
    "needs-manage-channels": {
        ENGLISH: "You need the Manage Channels permission here to change settings.",
        SIMPLIFIED: "你需要这里的“管理频道”权限才能更改设置。",
        TRADITIONAL: "你需要這裡的「管理頻道」權限才能更改設定。",
    },
    "settings-unavailable": {
        ENGLISH: "Settings can't be saved right now (the database is unavailable); nothing was "
        "changed. Try again later. /poem keeps working with the defaults.",
        SIMPLIFIED: "现在无法保存设置（数据库不可用），什么都没改。请稍后再试。"
        "/poem 会继续用默认值。",
        TRADITIONAL: "現在無法儲存設定（資料庫不可用），什麼都沒改。請稍後再試。"
        "/poem 會繼續用預設值。",
    },
    "temperature-set": {
        ENGLISH: "Poems in this channel now use temperature {value}.",
        SIMPLIFIED: "此频道的诗现在使用温度 {value}。",
        TRADITIONAL: "此頻道的詩現在使用溫度 {value}。",
    },
    "style-set": {
        ENGLISH: "Poems in this channel now default to {name}.",
        SIMPLIFIED: "此频道的诗现在默认用 {name}。",
        TRADITIONAL: "此頻道的詩現在預設用 {name}。",
    },
    "settings-reset": {
        ENGLISH: "This channel now uses the bot's defaults.",
        SIMPLIFIED: "此频道现在使用机器人的默认值。",
        TRADITIONAL: "此頻道現在使用機器人的預設值。",
    },
    "settings-shown": {
        ENGLISH: "This channel: style {style}, format {format}, temperature {temperature}.",
        SIMPLIFIED: "此频道：风格 {style}，格式 {format}，温度 {temperature}。",
        TRADITIONAL: "此頻道：風格 {style}，格式 {format}，溫度 {temperature}。",
    },
    "default": {ENGLISH: "(default)", SIMPLIFIED: "（默认）", TRADITIONAL: "（預設）"},
    "format-set": {
        ENGLISH: "Poems in this channel are now sent as {format}.",
        SIMPLIFIED: "此频道的诗现在以{format}发送。",
        TRADITIONAL: "此頻道的詩現在以{format}發送。",
    },
    "format-embed": {ENGLISH: "embeds", SIMPLIFIED: "嵌入卡片", TRADITIONAL: "嵌入卡片"},
    "format-text": {ENGLISH: "plain text", SIMPLIFIED: "纯文本", TRADITIONAL: "純文字"},
    "part": {
        ENGLISH: "part {index} of {count}",
        SIMPLIFIED: "第 {index} 部分，共 {count} 部分",
        TRADITIONAL: "第 {index} 部分，共 {count} 部分",
    },
}


def language(locale: discord.Locale | str | None) -> str:
    """The catalogue's language for a Discord locale: zh-CN, zh-TW, else English."""
    value = locale.value if isinstance(locale, discord.Locale) else str(locale or "")
    return _LANGUAGES.get(value, ENGLISH)


def say(locale: discord.Locale | str | None, key: str, **values: object) -> str:
    """`key`'s text in the user's language, with `values` filled in."""
    entry = WORDS.get(key)
    if entry is None:
        return key.format(**values) if values else key
    text = entry.get(language(locale)) or entry[ENGLISH]
    return text.format(**values)
