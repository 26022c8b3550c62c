#!/usr/bin/env python3
"""The anomaly defaults under the three checks of generalisation we can run on the development
data (issue 14): the 28 NAB files as they are, each category on its own (so a choice tuned on
two categories can be read on the third), and the same files resampled to 10 and 15 minutes.

    python3 bench/anomaly_protocol.py OUT [--bin .build/release/forecastd] [--sets dev,10,15]
                                          [-- extra replay options, e.g. --anomaly-cooldown 50]

For every set it replays the files with the daemon's settings (plus the extra options), then
scores the outputs with NAB's three profiles (standard, low FP, low FN), with NAB's threshold
optimisation and with the daemon's own flags, for all files and for each category alone.
Writes OUT/protocol.json and prints one table; the replay time of each set is in it too.
"""
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, '..', '..', 'shared')
NAB = os.path.join(SHARED, 'data', 'nab')
SCORER = os.path.join(SHARED, 'tools', 'nabscore.py')
CATEGORIES = ['artificialNoAnomaly', 'artificialWithAnomaly', 'realAWSCloudwatch']


def score(outputs, data, fixed, partial=False):
    cmd = [sys.executable, SCORER, outputs, '--data', data]
    if fixed:
        cmd.append('--fixed-threshold')
    if partial:
        cmd.append('--partial')
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit('%s: %s' % (' '.join(cmd), done.stderr.strip()))
    last = done.stdout.strip().splitlines()[-1]
    fields = dict(f.split('=') for f in last.split()[1:])
    return {k: float(fields[k]) for k in ('standard', 'low_fp', 'low_fn')}


def category_view(outputs, cat, root, name):
    """A folder holding only one category's outputs (symlinked), for --partial scoring."""
    view = os.path.join(root, 'view-%s-%s' % (name, cat))
    os.makedirs(view, exist_ok=True)
    link = os.path.join(view, cat)
    if not os.path.islink(link):
        os.symlink(os.path.abspath(os.path.join(outputs, cat)), link)
    return view


def main():
    args = sys.argv[1:]
    extra = []
    if '--' in args:
        i = args.index('--')
        args, extra = args[:i], args[i + 1:]
    if not args:
        sys.exit(__doc__)
    out = args[0]
    binary = os.path.join(HERE, '..', '.build', 'release', 'forecastd')
    sets = ['dev', '10', '15']
    i = 1
    while i < len(args):
        if args[i] == '--bin':
            binary = args[i + 1]
            i += 2
        elif args[i] == '--sets':
            sets = args[i + 1].split(',')
            i += 2
        else:
            sys.exit('unknown option ' + args[i])
    os.makedirs(out, exist_ok=True)
    result = {'extra': extra, 'sets': {}}
    for s in sets:
        if s == 'dev':
            data = NAB
        else:
            data = os.path.join(out, 'data-%smin' % s)
            if not os.path.exists(os.path.join(data, 'labels.json')):
                subprocess.run([sys.executable, os.path.join(HERE, 'resample_nab.py'), str(int(s) * 60), data], check=True,
                               capture_output=True)
        outputs = os.path.join(out, 'out-' + s)
        start = time.time()
        subprocess.run([binary, 'replay', '--csv-dir', data, '--output-dir', outputs, '--time-column', 'timestamp',
                        '--value-column', 'value', '--quiet', '--jobs', '2', '--report', os.path.join(out, 'report-%s.json' % s)] + extra,
                       check=True)
        seconds = time.time() - start
        entry = {'replay_seconds': round(seconds, 1)}
        for mode in ('optimised', 'fixed'):
            entry[mode] = {'all': score(outputs, data, mode == 'fixed')}
            for cat in CATEGORIES:
                if cat == 'artificialNoAnomaly':
                    continue  # no windows: it scores only through the false positives it adds to "all"
                entry[mode][cat] = score(category_view(outputs, cat, out, s), data, mode == 'fixed', partial=True)
        entry['flags'] = count_flags(outputs)
        result['sets'][s] = entry
    with open(os.path.join(out, 'protocol.json'), 'w') as f:
        json.dump(result, f, indent=1)
    print_table(result)


def count_flags(outputs):
    """Flags per reason, and flags in the files without anomalies (all false positives)."""
    reasons, quiet = {}, 0
    for root, _, files in os.walk(outputs):
        for name in files:
            if not name.endswith('.csv'):
                continue
            with open(os.path.join(root, name)) as f:
                header = f.readline().strip().split(',')
                ia, ir = header.index('is_anomaly'), header.index('reason')
                for line in f:
                    cols = line.rstrip('\n').split(',')
                    if cols[ia] in ('1', 'true'):
                        reasons[cols[ir]] = reasons.get(cols[ir], 0) + 1
                        if os.path.basename(root) == 'artificialNoAnomaly':
                            quiet += 1
    return {'by_reason': reasons, 'in_files_without_anomalies': quiet}


def print_table(result):
    print('set   mode       scope                  standard  low_fp  low_fn')
    for s, e in result['sets'].items():
        for mode in ('optimised', 'fixed'):
            for scope, v in e[mode].items():
                print('%-5s %-10s %-22s %8.1f %7.1f %7.1f' % (s, mode, scope, v['standard'], v['low_fp'], v['low_fn']))
        print('%-5s replay %.1f s, flags %s' % (s, e['replay_seconds'], json.dumps(e['flags'])))


if __name__ == '__main__':
    main()
