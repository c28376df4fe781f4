"""The bench's figures as text tables, each ending with its headline ratios."""

from __future__ import annotations

__all__ = ["format_options_table", "format_predict_table", "format_table"]


def format_table(result):
    """The bench's figures as text, ending with the one-line headline."""
    lines = [f"bmdkit bench ({result['mode']}) on {result['machine']['cpu']}, "
             f"{result['machine']['cpu_count']} cores, {result['machine']['torch_threads']} torch "
             f"threads, device {result['machine']['device']}", ""]
    head = (f"{'cohort':<12}{'n':>6}{'px':>5}{'floor s/ep':>12}{'fit s/ep':>10}{'naive s/ep':>12}"
            f"{'overhead':>10}{'cache x':>9}{'predict img/s':>15}")
    lines.append(head)
    for name, r in result["datasets"].items():
        lines.append(f"{name:<12}{r['n']:>6}{r['image_size']:>5}{r['floor_epoch_s']:>12.3f}"
                     f"{r['fit_epoch_s']:>10.3f}{r['naive_epoch_s']:>12.3f}"
                     f"{r['overhead_ratio']:>10.3f}{r['cache_speedup']:>9.1f}"
                     f"{r['predict_images_per_s']:>15.0f}")
    lines += ["", f"{'scaling':<12}{'n':>6}{'px':>5}{'fit s/ep':>10}{'ms/subject':>12}"
                  f"{'store MB':>10}{'fit peak MB':>13}{'growth MB':>11}"]
    for name, points in (("n", result["scaling_n"]), ("image_size", result["scaling_image_size"]),
                         ("memmap", [result["larger_than_ram"]])):
        for p in points:
            lines.append(f"{name:<12}{p['n']:>6}{p['image_size']:>5}{p['epoch_s']:>10.3f}"
                         f"{p['ms_per_subject']:>12.2f}{p['store_mb']:>10.1f}"
                         f"{p['fit_peak_mb']:>13.0f}{p['fit_growth_mb']:>11.1f}")
    ph = result["phantoms"]
    lines += ["", f"phantoms: {ph['n']} {ph['view']} films at {ph['image_size']} px rendered in "
                  f"{ph['render_s']:.1f} s ({ph['films_per_s']:.1f} films/s), DXA truth "
                  f"{ph['dxa_s']:.1f} s (SYNTHETIC, one process)"]
    lines += ["", f"overhead_ratio={result['overhead_ratio']:.3f} "
                  f"cache_speedup={result['cache_speedup']:.1f} "
                  f"time_linearity={result['time_linearity']:.2f} "
                  f"(radiographs, n={result['datasets']['radiographs']['n']}, "
                  f"{result['datasets']['radiographs']['image_size']} px, "
                  f"{result['machine']['device']})"]
    return "\n".join(lines)


def format_options_table(result):
    """The ``--options`` figures as text."""
    machine = result["machine"]
    lines = [f"bmdkit bench --options ({result['mode']}) on {machine['cpu']}, "
             f"{machine['torch_threads']} torch threads, device {machine['device']}; SYNTHETIC "
             f"demo cohort, {result['settings']['options_epochs']} epochs per fit", "",
             f"{'option':<17}{'px':>5}{'1st ep s':>10}{'epoch s':>9}{'fit s':>8}{'epoch x':>9}"
             f"{'fit x':>7}{'R2':>7}{'MAE':>8}{'|diff|':>8}{'peak MB':>9}"]
    for r in result["options"]:
        lines.append(f"{r['option']:<17}{r['image_size']:>5}{r['first_epoch_s']:>10.2f}"
                     f"{r['epoch_s']:>9.3f}{r['fit_s']:>8.2f}{r['epoch_speedup']:>9.2f}"
                     f"{r['fit_speedup']:>7.2f}{r['heldout_r2']:>7.3f}{r['heldout_mae']:>8.4f}"
                     f"{r['max_abs_diff_vs_first']:>8.4f}{r['fit_peak_mb']:>9.0f}")
    lines += ["", "epoch x / fit x: speed-up over float32 at the same size (> 1 is faster); "
                  "|diff|: largest held-out prediction difference from float32, g/cm²"]
    return "\n".join(lines)


def format_predict_table(result):
    """The ``--predict`` figures as text, ending with the headline."""
    machine, s = result["machine"], result["settings"]
    lines = [f"bmdkit bench --predict ({result['mode']}) on {machine['cpu']}, "
             f"{machine['cpu_count']} cores, {s['workers']} decoding workers, "
             f"{machine['torch_threads']} torch threads, device {machine['device']}; "
             f"{s['model']['backbone']} at {s['image_size']} px; files "
             f"{s['file_shape'][0]}x{s['file_shape'][1]} 16-bit", "",
             f"{'format':<8}{'n':>6}{'decode/s':>10}{'compute/s':>11}{'end-to-end/s':>14}"
             f"{'efficiency':>12}  bound by"]
    for name, f in result["formats"].items():
        lines.append(f"{name:<8}{f['n']:>6}{f['decode_floor']:>10.1f}{f['compute_floor']:>11.1f}"
                     f"{f['end_to_end']:>14.1f}{f['predict_efficiency']:>12.3f}  {f['bound_by']}")
    lines += ["", f"{'memory':<8}{'n':>6}{'peak MB':>10}{'growth MB':>11}{'rows/s':>9}"]
    for p in result["memory"]:
        lines.append(f"{'':<8}{p['n']:>6}{p['peak_mb']:>10.0f}{p['growth_mb']:>11.1f}"
                     f"{p['rows_per_s']:>9.1f}")
    lines += ["", f"predict_efficiency={result['predict_efficiency']:.3f} "
                  f"memory_ratio={result['memory_ratio']:.3f} (peak at n={s['memory_n'][1]} / "
                  f"n={s['memory_n'][0]}, files {s['memory_file_shape'][0]}x"
                  f"{s['memory_file_shape'][1]})"]
    return "\n".join(lines)
