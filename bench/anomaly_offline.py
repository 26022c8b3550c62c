#!/usr/bin/env python3
"""A Python copy of forecastd's anomaly scorer (Sources/Forecast/Engine/AnomalyScorer.swift and its
checks, before the contextual check), run on replay's output CSVs: the forecasts stay as replay
made them, and only the scoring is redone, in seconds instead of a replay's minutes. It is for
trying a change to the scoring on all the protocol's sets before writing it in Swift.

    python3 bench/anomaly_offline.py DATA_DIR REPLAY_OUT NEW_OUT [key=value ...]
    python3 ../shared/tools/nabscore.py NEW_OUT --data DATA_DIR --fixed-threshold

With no key=value it reproduces the daemon's flags with the contextual check off
(`--anomaly-context-seasons 0`): 74.7 / 64.8 / 60.3 on the development files and their 10- and
15-minute resamplings. The keys (see P below) switch on the variants tried for issue 14: a
contextual check with a Gaussian or a fitted tail (ctx=1, ctxtail=gauss|gpd), fitted tails for the
level-shift checks (shifttail=gpd), a one-point residual check with a fitted tail (pointthr), red
points kept out of the range (redexcl=1), and the range check's residual condition as a fitted
tail probability (rangetail). Needs numpy.
"""
import csv, os, sys, json, math
import numpy as np
from math import erf, erfc, sqrt, log10
from datetime import datetime


class tails:
    """Two-sided tail of a history: empirical to its 90th percentile of distances, GPD beyond."""
    @staticmethod
    def gpd_fit(y):
        y=np.sort(y); n=len(y); a0=y.mean()
        a1=np.sum(y*(n-1-np.arange(n))/(n-1))/n
        den=a0-2*a1
        if den<=1e-12: return 0.0, max(a0,1e-12)
        k=a0/den-2; s=2*a0*a1/den; g=-k
        if g<=0: return 0.0, max(a0,1e-12)
        return g, s
    @staticmethod
    def tail_prob(h, x, q0=0.9):
        """P(|X - med| >= |x - med|) under history h: empirical below the q0 quantile, GPD above."""
        h=np.asarray(h); med=np.median(h); a=np.abs(h-med); ax=abs(x-med)
        u=np.quantile(a,q0)
        if ax<=u: return max(np.mean(a>=ax), 1e-10)
        ex=a[a>u]-u
        if len(ex)<5: return max(np.mean(a>=ax),1.0/len(a))
        g,s=tails.gpd_fit(ex); y=ax-u; pu=len(ex)/len(a)
        if g==0: return pu*math.exp(-y/s)
        return pu*(1+g*y/s)**(-1/g)
    @staticmethod
    def score_of(t): return min(1,max(0,-log10(max(t,1e-10))/10))

P = dict(thr=0.5, cool=100, short=10, long=1000, minhist=100, rawscale=3.0, minspread=0.0173,
         rtol=0.05, rminres=4.0, trim=0.025, win=500, hist=1000,
         shifttail='gauss', ctx=0, ctxK=3, ctxtail='gauss', pointthr=0.0, q0=0.9,
         redexcl=0, rangetail=0.0)

def gauss_score(d, mean, std):
    t = 0.5*erfc(abs(d-mean)/std/sqrt(2)); return min(1,max(0,-log10(max(t,1e-10))/10))

def gate(det, sc, thr):
    """One flag per incident (IncidentGate.swift): rest for a window and until the score is low."""
    if sc>=thr and not det.red and det.since>det.w:
        det.red=True; det.since=0; return True
    if sc<0.6*thr: det.red=False
    return False

class Rolling:
    def __init__(s, cap): s.cap=cap; s.v=[]
    def push(s, x):
        s.v.append(x)
        if len(s.v)>s.cap: s.v.pop(0)
    @property
    def n(s): return len(s.v)
    def mean(s): return sum(s.v)/max(len(s.v),1)
    def var(s):
        m=s.mean(); return max(sum(x*x for x in s.v)/max(len(s.v),1)-m*m,0)

class Shift:
    def __init__(s, w, trim, hl, tailkind):
        s.w=w; s.trim=trim; s.hist=Rolling(hl); s.vals=[]; s.red=False; s.since=10**9; s.tail=tailkind
    def tm(s, a):
        a=sorted(a); k=int(len(a)*s.trim); a=a[k:len(a)-k]; return sum(a)/len(a)
    def pushv(s, v):
        s.vals.append(v)
        if len(s.vals)>2*s.w: s.vals.pop(0)
        if len(s.vals)<2*s.w: return None
        return s.tm(s.vals[s.w:]) - s.tm(s.vals[:s.w])
    def push(s, v, level, thr, minh):
        if s.since<10**9: s.since+=1
        d=s.pushv(v)
        if d is None: return None, None
        if s.hist.n < minh: return d, None
        if s.tail=='gpd':
            sc=tails.score_of(tails.tail_prob(s.hist.v, d))
        else:
            std=max(math.sqrt(s.hist.var()), 1e-5*(level if math.isfinite(level) else 0), 1e-12)
            sc=gauss_score(d, s.hist.mean(), std)
        return d, (sc if gate(s, sc, thr) else None)
    def learn(s, v):
        d=s.pushv(v)
        if d is not None: s.hist.push(d)

class Context:
    """Deviation of the last w values from the same phase of the K seasons before (median)."""
    def __init__(s, period, w, K, hl, tailkind):
        s.P=period; s.w=w; s.K=K; s.vals=[]; s.e=[]; s.hist=Rolling(hl); s.red=False; s.since=10**9; s.tail=tailkind
    def pushv(s, v):
        s.vals.append(v)
        if len(s.vals)>s.K*s.P+1: s.vals.pop(0)
        if len(s.vals)<s.K*s.P+1: return None
        exp=float(np.median([s.vals[-1-k*s.P] for k in range(1,s.K+1)]))
        s.e.append(v-exp)
        if len(s.e)>s.w: s.e.pop(0)
        if len(s.e)<s.w: return None
        return sum(s.e)/s.w
    def push(s, v, level, thr, minh):
        if s.since<10**9: s.since+=1
        d=s.pushv(v)
        if d is None: return None, None
        if s.hist.n<minh: return d, None
        if s.tail=='gpd': sc=tails.score_of(tails.tail_prob(s.hist.v, d))
        else:
            std=max(math.sqrt(s.hist.var()), 1e-5*level, 1e-12); sc=gauss_score(d, s.hist.mean(), std)
        return d, (sc if gate(s, sc, thr) else None)
    def learn(s, v):
        d=s.pushv(v)
        if d is not None: s.hist.push(d)

def day_points(step):
    if not step or step<=0: return 288
    return int(min(max(round(86400/step),24),1440))

class OneSided:
    """P(Z >= z) for z >= 0 from a history of |z|: empirical to the 90th percentile, GPD beyond."""
    def __init__(s, h):
        a=np.sort(np.asarray(h)); s.a=a; n=len(a); k=min(n-1,int(n*0.9)); s.u=a[k]
        ex=a[k+1:]-s.u; ex=ex[ex>0]; s.pu=0
        if len(ex)>=5:
            s.pu=len(ex)/n; s.g,s.s=tails.gpd_fit(ex)
    def tail(s, z):
        n=len(s.a)
        if z<=s.u or s.pu==0: return max(np.mean(s.a>=z), 1.0/n if z>s.u else 1e-10)
        y=z-s.u
        return s.pu*(math.exp(-y/s.s) if s.g==0 else (1+s.g*y/s.s)**(-1/s.g))

class Scorer:
    def __init__(s, p):
        s.p=p; s.recent=Rolling(p['short']); s.history=Rolling(p['long']); s.since=10**9; s.prevred=False
        s.vmin=math.inf; s.vmax=-math.inf; s.vcount=0; s.fixed=False; s.shift=None; s.sshift=None; s.ctx=None
        s.ztail=[]; s.ztailmodel=None
    def fix(s, step, hist_values):
        s.fixed=True; p=s.p
        day=day_points(step); short=max(1,day//4)
        s.rangemin=max(p['minhist'], day)
        hl=max(p['long'],3*day)
        s.shift=Shift(day,p['trim'],max(p['long'],3*day,3*day),p['shifttail'])
        s.sshift=Shift(short,p['trim'],max(p['long'],3*short,3*day),p['shifttail'])
        s.day=day
        if p['ctx']:
            s.ctx=Context(day, short, p['ctxK'], max(p['long'],3*short,3*day), p['ctxtail'])
        for v in hist_values:
            s.shift.learn(v); s.sshift.learn(v)
            if s.ctx: s.ctx.learn(v)
            s.vmin=min(s.vmin,v); s.vmax=max(s.vmax,v); s.vcount+=1
    def score(s, residual, scale, value):
        p=s.p
        z=min(abs(residual)/max(scale,1e-12),1e6)
        raw=erf(z/(p['rawscale']*sqrt(2)))
        s.recent.push(raw)
        if s.since<10**9: s.since+=1
        score=0.0; red=False; reason=''
        if s.history.n>=p['minhist']:
            m=s.history.mean(); std=max(math.sqrt(s.history.var()),0.05*m,p['minspread'])
            zm=(s.recent.mean()-m)/std; t=0.5*erfc(zm/sqrt(2))
            score=min(1,max(0,-log10(max(t,1e-10))/10))
            if score>0: reason='residuals'
            red=score>=p['thr']
            if red and s.prevred: score=min(score,0.3)
        s.prevred=red
        if p['pointthr']>0 and len(s.ztail)>=p['minhist']:
            ps=tails.score_of(tails.tail_prob(s.ztail, z, p['q0'])) if True else 0
            # one-sided on |z|: tail_prob uses |x-med| ; use z directly
            if ps>=p['pointthr'] and ps>score: score=max(ps, p['thr']); reason='point'
        level=max(abs(s.vmin),abs(s.vmax),s.vmax-s.vmin)
        ds={}
        for name,det in (('level_shift_day',s.shift),('level_shift_hours',s.sshift),('context',s.ctx)):
            if det is None: continue
            d,sc=det.push(value, level, p['thr'], max(p['minhist'],det.w))
            ds[name]=d
            if sc is not None and sc>score: score=sc; reason=name
        if p['rangetail']>0:
            unexpected = s.ztailmodel is not None and len(s.ztail)>=p['minhist'] and s.ztailmodel.tail(z) <= p['rangetail']
        else:
            unexpected = z>=p['rminres']
        if p['rtol']>0 and s.vcount>=s.rangemin and unexpected:
            tol=p['rtol']*(s.vmax-s.vmin)
            if s.vmax>s.vmin and (value>s.vmax+tol or value<s.vmin-tol):
                score=1; reason='out_of_range'; s.prevred=True
        wasred=score>=p['thr']
        flagged=wasred and s.since>p['cool']
        if flagged: s.since=0
        if not flagged and score>=p['thr']: score=min(score,0.3)
        if not flagged and s.since>p['short']:
            s.history.push(raw)
            if p['pointthr']>0 or p['rangetail']>0:
                s.ztail.append(z); s.ztail=s.ztail[-p['long']:]
                if len(s.ztail)%16==0: s.ztailmodel=OneSided(s.ztail)
            for name,det in (('level_shift_day',s.shift),('level_shift_hours',s.sshift),('context',s.ctx)):
                if det is not None and ds.get(name) is not None: det.hist.push(ds[name])
        if not flagged and not (p['redexcl'] and wasred):
            s.vmin=min(s.vmin,value); s.vmax=max(s.vmax,value); s.vcount+=1
        return score, flagged, (reason if flagged else '')

def parse_t(x): return datetime.strptime(x.split('.')[0], '%Y-%m-%d %H:%M:%S').timestamp()

def run_file(path, p):
    rows=list(csv.DictReader(open(path)))
    sc=Scorer(p); out=[]; res=[]; raw=[]; flags=[]; steps=[]; last_t=None
    for r in rows:
        if not r['actual']:
            out.append((r['timestamp'],0.0,0,'')); continue
        v=float(r['actual']); t=parse_t(r['timestamp'])
        if r['predicted']:
            pr=float(r['predicted'])
            # engine residual uses the unclamped forecast; output may be clamped at 0 (non_negative): accept the error
            rr=v-pr
            if len(res)>=20:
                w=np.array(res); c=float(np.median(w)); q1,q3=np.percentile(w,[25,75]); s=(q3-q1)/1.349
                s = s if s>1e-9 else 1.0
            else:
                c=float(np.median(res)) if res else 0.0; s=1.0
            if not sc.fixed:
                st=sorted(steps[-16:]); step=st[len(st)//2] if st else 0
                hv=[x for x,f in zip(raw,flags) if not f][-p['hist']:]
                sc.fix(step, hv)
            score,fl,reason=sc.score(rr-c, s, v)
            if not fl:
                res.append(rr); res=res[-p['win']:]
        else:
            score,fl,reason=0.0,False,''
        out.append((r['timestamp'],score,int(fl),reason))
        if last_t is not None: steps.append(t-last_t)
        last_t=t
        raw.append(v); flags.append(fl)
    return out

def run(data_dir, old_out, new_out, p):
    labels=json.load(open(os.path.join(data_dir,'labels.json')))
    from multiprocessing import Pool
    with Pool(2) as pool:
        results=pool.starmap(run_file, [(os.path.join(old_out,rel),p) for rel in labels])
    for rel,out in zip(labels,results):
        os.makedirs(os.path.dirname(os.path.join(new_out,rel)),exist_ok=True)
        with open(os.path.join(new_out,rel),'w') as f:
            f.write('timestamp,anomaly_score,is_anomaly,reason\n')
            for row in out: f.write('%s,%.6f,%d,%s\n'%row)

if __name__=='__main__':
    data,old,new=sys.argv[1:4]
    for kv in sys.argv[4:]:
        k,v2=kv.split('='); P[k]=type(P[k])(v2)
    run(data,old,new,P)
