"""Command names, option names, choices and descriptions in Simplified (zh-CN) and Traditional
(zh-TW) Chinese, given to Discord when the commands are synced; a client in either locale
shows them (interactions still arrive under the English names, so nothing else changes)."""

from __future__ import annotations

import re

import discord
from discord import app_commands

# English text -> (zh-CN, zh-TW). Names stay lowercase words without spaces, as Discord
# requires of slash-command and option names.
TRANSLATIONS: dict[str, tuple[str, str]] = {
    # /poem
    "poem": ("写诗", "寫詩"),
    "Write a poem or lyrics in one of the bot's styles.": (
        "用机器人的一种风格写一首诗或一段歌词。",
        "用機器人的一種風格寫一首詩或一段歌詞。",
    ),
    "style": ("风格", "風格"),
    "which model writes it (default: this channel's style)": (
        "由哪个模型来写（默认：本频道的风格）",
        "由哪個模型來寫（預設：本頻道的風格）",
    ),
    "prompt": ("开头", "開頭"),
    "text the poem starts with": ("诗的开头文字", "詩的開頭文字"),
    "length": ("长度", "長度"),
    "temperature": ("温度", "溫度"),
    "0 = always the likeliest character; higher = wilder (default: channel's)": (
        "0 = 总选最可能的字；越高越奔放（默认：本频道的）",
        "0 = 總選最可能的字；越高越奔放（預設：本頻道的）",
    ),
    "seed": ("种子", "種子"),
    "the same seed and options give the same poem": (
        "同样的种子和选项写出同样的诗",
        "同樣的種子和選項寫出同樣的詩",
    ),
    "form": ("体裁", "體裁"),
    "the poem's form, from what the style offers (default: the style's own)": (
        "诗的体裁，从该风格提供的里选（默认：该风格自己的）",
        "詩的體裁，從該風格提供的裡選（預設：該風格自己的）",
    ),
    "acrostic": ("藏头", "藏頭"),
    "藏头 / acrostic: line i starts with its i-th character or letter": (
        "藏头：第 i 行以第 i 个字开头",
        "藏頭：第 i 行以第 i 個字開頭",
    ),
    "script": ("简繁", "簡繁"),
    "Chinese styles: the script the poem is shown in": (
        "中文风格：诗以简体还是繁体显示",
        "中文風格：詩以簡體還是繁體顯示",
    ),
    "about": ("主题", "主題"),
    "what the poem is about: up to 5 words or 12 Chinese characters; - for none": (
        "诗的主题：最多 5 个词或 12 个汉字；- 表示不要主题",
        "詩的主題：最多 5 個詞或 12 個漢字；- 表示不要主題",
    ),
    "简体 simplified": ("简体", "簡體"),
    "繁體 traditional": ("繁体", "繁體"),
    # the message menu (context-menu names may have spaces and capitals)
    "Write a poem from this": ("以此写诗", "以此寫詩"),
    # /settings
    "settings": ("设置", "設定"),
    "Set this channel's defaults for /poem (needs Manage Channels)": (
        "设置本频道 /poem 的默认值（需要“管理频道”权限）",
        "設定本頻道 /poem 的預設值（需要「管理頻道」權限）",
    ),
    "Set this channel's default temperature.": ("设置本频道的默认温度。", "設定本頻道的預設溫度。"),
    "value": ("值", "值"),
    "0 = always the likeliest character; 1 = as trained; 2 = wild": (
        "0 = 总选最可能的字；1 = 如训练时；2 = 奔放",
        "0 = 總選最可能的字；1 = 如訓練時；2 = 奔放",
    ),
    "Set this channel's default style.": ("设置本频道的默认风格。", "設定本頻道的預設風格。"),
    "name": ("名称", "名稱"),
    "the style /poem uses here when none is given": (
        "没有指定时 /poem 在这里用的风格",
        "沒有指定時 /poem 在這裡用的風格",
    ),
    "format": ("格式", "格式"),
    "Send this channel's poems as embeds or as plain text.": (
        "本频道的诗以嵌入卡片还是纯文本发送。",
        "本頻道的詩以嵌入卡片還是純文字發送。",
    ),
    "embed: a card with the poem (default); text: plain messages": (
        "嵌入卡片：诗在卡片里（默认）；纯文本：普通消息",
        "嵌入卡片：詩在卡片裡（預設）；純文字：普通訊息",
    ),
    "embed": ("嵌入卡片", "嵌入卡片"),
    "text": ("纯文本", "純文字"),
    "show": ("查看", "查看"),
    "Show this channel's settings.": ("查看本频道的设置。", "查看本頻道的設定。"),
    "reset": ("重置", "重設"),
    "Forget this channel's settings and use the bot's defaults.": (
        "清除本频道的设置，使用机器人的默认值。",
        "清除本頻道的設定，使用機器人的預設值。",
    ),
    # /model (the operators')
    "model": ("模型", "模型"),
    "Manage the bot's models (the bot's operators only)": (
        "管理机器人的模型（仅限机器人的管理员）",
        "管理機器人的模型（僅限機器人的管理員）",
    ),
    "list": ("列表", "列表"),
    "List styles and versions, with the live one, validation loss, size and date.": (
        "列出风格和版本，及在用版本、验证损失、大小和日期。",
        "列出風格和版本，及在用版本、驗證損失、大小和日期。",
    ),
    "info": ("详情", "詳情"),
    "Show a model's card and its loss curve.": (
        "查看模型的说明卡和损失曲线。",
        "查看模型的說明卡和損失曲線。",
    ),
    "the style": ("风格", "風格"),
    "version": ("版本", "版本"),
    "a version (default: the live one)": ("一个版本（默认：在用的）", "一個版本（預設：在用的）"),
    "activate": ("启用", "啟用"),
    "Make a version live now, without dropping poems being written.": (
        "立即启用一个版本，正在写的诗不会中断。",
        "立即啟用一個版本，正在寫的詩不會中斷。",
    ),
    "the version to make live": ("要启用的版本", "要啟用的版本"),
    "rollback": ("回滚", "回滾"),
    "Return a style to the version that was live before.": (
        "把风格退回之前在用的版本。",
        "把風格退回之前在用的版本。",
    ),
    "the style to return to its previous version": (
        "要退回上一个版本的风格",
        "要退回上一個版本的風格",
    ),
    "reload": ("重新载入", "重新載入"),
    "Rescan the models folder: bundles copied in by hand appear.": (
        "重新扫描模型文件夹：手动复制进来的模型会出现。",
        "重新掃描模型資料夾：手動複製進來的模型會出現。",
    ),
    "retrain": ("重新训练", "重新訓練"),
    "Train a new version of a style as a background job.": (
        "在后台训练一个风格的新版本。",
        "在背景訓練一個風格的新版本。",
    ),
    "the style to train again on its corpus": (
        "要用其语料重新训练的风格",
        "要用其語料重新訓練的風格",
    ),
    "epochs": ("轮数", "輪數"),
    "passes over the corpus (default 10)": (
        "遍历语料的次数（默认 10）",
        "遍歷語料的次數（預設 10）",
    ),
    "make it live when done (default: only if its validation loss is better)": (
        "完成后启用（默认：仅当验证损失更好时）",
        "完成後啟用（預設：僅當驗證損失更好時）",
    ),
    "ngram": ("n元模型", "n元模型"),
    "order of the n-gram model mixed in, 0 for none (default: as the live version)": (
        "混入的 n 元模型阶数，0 为不用（默认：同在用版本）",
        "混入的 n 元模型階數，0 為不用（預設：同在用版本）",
    ),
    "add": ("添加", "新增"),
    "Add a new style trained on an uploaded text file.": (
        "用上传的文本文件训练并添加一个新风格。",
        "用上傳的文字檔訓練並新增一個新風格。",
    ),
    "the new style's name (a-z, 0-9, _ and -)": (
        "新风格的名称（a-z、0-9、_ 和 -）",
        "新風格的名稱（a-z、0-9、_ 和 -）",
    ),
    "corpus": ("语料", "語料"),
    "a UTF-8 text file to learn from": ("用来学习的 UTF-8 文本文件", "用來學習的 UTF-8 文字檔"),
    "size": ("大小", "大小"),
    "small trains in minutes; large writes best but trains for hours": (
        "small 几分钟训练完；large 写得最好但要训练几小时",
        "small 幾分鐘訓練完；large 寫得最好但要訓練幾小時",
    ),
    "small": ("小", "小"),
    "medium": ("中", "中"),
    "large": ("大", "大"),
    "order of a Kneser-Ney n-gram model to mix in (default 0: none); helps small corpora": (
        "混入的 Kneser-Ney n 元模型阶数（默认 0：不用）；对小语料有帮助",
        "混入的 Kneser-Ney n 元模型階數（預設 0：不用）；對小語料有幫助",
    ),
    "unit": ("单位", "單位"),
    "what one poem is (default: a paragraph where the text has blank lines, else a line)": (
        "一首诗是什么（默认：文本有空行时为一段，否则为一行）",
        "一首詩是什麼（預設：文字有空行時為一段，否則為一行）",
    ),
    "paragraph": ("段落", "段落"),
    "line": ("行", "行"),
    "copy_guard": ("防抄", "防抄"),
    "never write this many consecutive characters of the upload (default 0: off; 8 suits lyrics)": (
        "不写出上传文本中连续这么多个字（默认 0：关闭；歌词宜用 8）",
        "不寫出上傳文字中連續這麼多個字（預設 0：關閉；歌詞宜用 8）",
    ),
    "cell": ("单元", "單元"),
    "the recurrent cell (default lstm; peephole: gates read the cell state; coupled: fewer "
    "weights)": (
        "循环单元（默认 lstm；peephole：门读取细胞状态；coupled：输入门与遗忘门合一，参数更少）",
        "循環單元（預設 lstm；peephole：門讀取細胞狀態；coupled：輸入門與遺忘門合一，參數更少）",
    ),
    "lstm": ("lstm 长短期记忆", "lstm 長短期記憶"),
    "gru": ("gru 门控循环单元", "gru 門控循環單元"),
    "peephole": ("peephole 窥孔 lstm", "peephole 窺孔 lstm"),
    "coupled": ("coupled 耦合门 lstm", "coupled 耦合門 lstm"),
    "jobs": ("任务", "任務"),
    "List retrain jobs and their state.": ("列出训练任务及其状态。", "列出訓練任務及其狀態。"),
    "cancel": ("取消", "取消"),
    "Cancel a queued or running retrain job; nothing live changes.": (
        "取消排队中或进行中的训练任务；在用的不变。",
        "取消排隊中或進行中的訓練任務；在用的不變。",
    ),
    "job": ("任务编号", "任務編號"),
    "the job number from /model jobs": ("/model jobs 里的任务编号", "/model jobs 裡的任務編號"),
}

# Texts with a number from the settings in them: (pattern, zh-CN, zh-TW) with {0} for it.
PATTERNS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (
        re.compile(
            r"most characters \(default: the form's own, else (\d+)\); a poem ends at a whole line"
        ),
        "最多几个字（默认：体裁自己的，否则 {0}）；诗总在整行处结束",
        "最多幾個字（預設：體裁自己的，否則 {0}）；詩總在整行處結束",
    ),
)

LOCALES = {discord.Locale.chinese: 0, discord.Locale.taiwan_chinese: 1}


def translate(text: str, locale: discord.Locale) -> str | None:
    """`text` in `locale` (zh-CN or zh-TW), or None where there is no translation."""
    index = LOCALES.get(locale)
    if index is None:
        return None
    found = TRANSLATIONS.get(text)
    if found is not None:
        return found[index]
    for pattern, *translated in PATTERNS:
        match = pattern.fullmatch(text)
        if match:
            return translated[index].format(*match.groups())
    return None


class PoemTranslator(app_commands.Translator):
    """discord.py's hook: asked for every name, description and choice when syncing."""

    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        return translate(string.message, locale)
