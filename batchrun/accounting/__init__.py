"""Usage, money and forecasts: the report of a run or an output file, prices, the estimate
before sending, and the spending cap."""
