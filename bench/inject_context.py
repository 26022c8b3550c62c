#!/usr/bin/env python3
"""Contextual anomalies injected into real series that no anomaly setting was tuned on, in NAB's
layout, to measure what a contextual check finds that the value and residual checks cannot.

    python3 bench/inject_context.py OUT_DIR [ett|daily]
    forecastd replay --csv-dir OUT_DIR --output-dir OUT --time-column timestamp --value-column value
    python3 ../shared/tools/nabscore.py OUT --data OUT_DIR [--fixed-threshold]

`ett` (the default): each of ETTh1's 7 hourly columns (the first 4000 rows, 167 days) is written
three times with one day changed, always at row 2880 (day 120, well after NAB's 15% probation).
ETTh1's days differ from each other about as much as its hours do, so a contextual check that
only runs where a series' season predicts its hours should stay silent here: the set measures
false alarms on real data more than detections. `daily`: the same with NAB's three artificial
daily series without anomalies (5-minute steps, 4032 rows, the day changed from row 2880, day 10),
where the day is the pattern and any change of it is the anomaly. The changes:
- flat: the day's values replaced by their mean (no daily swing: a sensor stuck, a shutdown);
- shifted: the day's values taken from 8 hours earlier (the cycle out of phase);
- damped: the day's swing around its mean halved (a quiet day, e.g. a holiday load).
Every value stays inside the range the series has already shown, and the day's mean is
unchanged, so neither a range check nor a day-level check sees it. Each file has one window,
centred on the day's start with NAB's width (10% of the file). Python 3 only.
"""
import csv
import json
import os
import sys

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'shared', 'data')
SOURCES = {
    # name: (files as (path, column), rows, day in rows, shift of the 'shifted' kind in rows)
    'ett': ([(os.path.join(SHARED, 'ETTh1.csv'), c) for c in ('HUFL', 'HULL', 'MUFL', 'MULL', 'LUFL', 'LULL', 'OT')], 4000, 24, 8),
    'daily': ([(os.path.join(SHARED, 'nab', 'artificialNoAnomaly', f + '.csv'), 'value')
               for f in ('art_daily_no_noise', 'art_daily_perfect_square_wave', 'art_daily_small_noise')], 4032, 288, 96),
}
START = 2880
KINDS = ('flat', 'shifted', 'damped')


def main():
    if len(sys.argv) not in (2, 3) or (len(sys.argv) == 3 and sys.argv[2] not in SOURCES):
        sys.exit(__doc__)
    out = sys.argv[1]
    files, ROWS, DAY, SHIFT = SOURCES[sys.argv[2] if len(sys.argv) == 3 else 'ett']
    labels = {}
    half = int(0.1 * ROWS) // 2
    for path, column in files:
        with open(path) as f:
            rows = list(csv.reader(f))
        header, rows = rows[0], rows[1:ROWS + 1]
        stamps = [r[0] for r in rows]
        c = header.index(column)
        name = column if column != 'value' else os.path.basename(path)[:-4]
        base = [float(r[c]) for r in rows]
        for kind in KINDS:
            v = list(base)
            day = base[START:START + DAY]
            mean = sum(day) / DAY
            for i in range(DAY):
                if kind == 'flat':
                    v[START + i] = mean
                elif kind == 'shifted':
                    v[START + i] = base[START + i - SHIFT]
                else:
                    v[START + i] = mean + 0.5 * (day[i] - mean)
            rel = '%s%s/%s.csv' % (sys.argv[2] if len(sys.argv) == 3 else 'ett', kind.capitalize(), name)
            os.makedirs(os.path.join(out, os.path.dirname(rel)), exist_ok=True)
            with open(os.path.join(out, rel), 'w') as f:
                f.write('timestamp,value\n')
                for t, x in zip(stamps, v):
                    f.write('%s,%r\n' % (t, x))
            labels[rel] = [[stamps[START - half] + '.000000', stamps[START + half] + '.000000']]
    with open(os.path.join(out, 'labels.json'), 'w') as f:
        json.dump(labels, f, indent=1, sort_keys=True)


if __name__ == '__main__':
    main()
