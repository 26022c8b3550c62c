// Forecast: the numerical core of forecastd (LSTM, training, windows, scaling, anomaly scoring).
// It does no I/O: callers hand it numbers and get numbers back.
