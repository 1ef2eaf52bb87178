"""In-field silent-data-corruption checks: engines, checks, levels, accusations, service.

Layout: ``engines`` (NumPy with scripted faults, CuPy on real GPUs), ``gemm`` (golden GEMM, ABFT,
Freivalds), ``memory`` (March C-, moving inversions, walking ones, random), ``peers`` (cross-device
vote, throughput against peers), ``levels`` + ``runner`` (what a quick/standard/deep run does),
``verdicts`` (pure accusation decisions), ``service`` (the daemon's side).
"""
