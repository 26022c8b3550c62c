#!/usr/bin/env python3
"""Resample the NAB development files to another step, to check the anomaly defaults on data
that is not 5-minute data (the level-shift windows are a day at each series' own step).

    python3 bench/resample_nab.py 600 /tmp/nab10          # 10-minute means
    forecastd replay --csv-dir /tmp/nab10 --output-dir OUT --time-column timestamp --value-column value
    python3 ../shared/tools/nabscore.py OUT --data /tmp/nab10 [--fixed-threshold]

Each output row is the mean of the rows in one `step`-second bucket, stamped with the bucket's
start. Each label window end moves to the bucket that holds it. Python 3 only.
"""
import calendar
import csv
import json
import os
import sys
import time


def epoch(text):
    return calendar.timegm(time.strptime(text.split('.')[0].replace('T', ' '), '%Y-%m-%d %H:%M:%S'))


def stamp(e):
    return time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(e))


def main():
    if len(sys.argv) != 3 or not sys.argv[1].isdigit() or int(sys.argv[1]) <= 0:
        sys.exit('usage: resample_nab.py STEP_SECONDS OUT_DIR [NAB_DIR via $NAB_DIR]')
    step, out = int(sys.argv[1]), sys.argv[2]
    src = os.environ.get('NAB_DIR', os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'data', 'nab'))
    labels = json.load(open(os.path.join(src, 'labels.json')))
    snapped = {}
    for rel, windows in labels.items():
        buckets = {}
        with open(os.path.join(src, rel)) as f:
            for row in csv.DictReader(f):
                buckets.setdefault(epoch(row['timestamp']) // step * step, []).append(float(row['value']))
        keys = sorted(buckets)
        os.makedirs(os.path.dirname(os.path.join(out, rel)), exist_ok=True)
        with open(os.path.join(out, rel), 'w') as f:
            f.write('timestamp,value\n')
            for k in keys:
                f.write('%s,%r\n' % (stamp(k), sum(buckets[k]) / len(buckets[k])))
        present = set(keys)

        def snap(text, direction):
            e = epoch(text) // step * step
            while e not in present:
                e += direction * step
            return stamp(e)
        snapped[rel] = [[snap(a, 1), snap(b, -1)] for a, b in windows]
    with open(os.path.join(out, 'labels.json'), 'w') as f:
        json.dump(snapped, f, indent=1)


if __name__ == '__main__':
    main()
