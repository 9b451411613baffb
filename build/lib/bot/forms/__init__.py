"""What a poem is in each tradition, as plain functions of text and characters.

Tang regulated verse (the 平水韻 rhyme groups and tones), English metre and rhyme (the CMU
pronouncing dictionary), lyric rhyme by Mandarin finals, acrostics, script conversion, and the
checkers the benchmark uses. Nothing here knows of onnxruntime or Discord: the engine turns
these rules into per-row masks, the Discord side and the page only name the forms.
"""
