# DESIGN §4 bars: how far each measured figure is from its target.
# x = bar, y = achievement (measured ratio / target for ">=" bars,
# target / measured for "<=" bars): >= 1 passes.
#   gnuplot -e "datafile='bars.dat'; outfile='bars.png'" bars.gp
# bars.dat: tab-separated "bar<TAB>achievement<TAB>rgb colour<TAB>label", header
# line first; achievement is capped at 3 by tools/bench, the label shows the
# measured ratio (or value, for the absolute bars) and PASS/FAIL.
set terminal pngcairo size 1100,520 font "DejaVu Sans,10" noenhanced
set output outfile
set datafile separator "\t"
set datafile missing "?"
set title "blazefs vs DESIGN §4 bars (>= 1.0 passes; SKIPped bars are omitted)"
set ylabel "achievement (ratio / target)"
set style fill solid 0.85 border -1
set boxwidth 0.6
set grid ytics
set yrange [0:3.3]
set xtics rotate by -20 scale 0
set key off
plot datafile every ::1 using 0:2:3:xtic(1) with boxes lc rgb variable, \
     datafile every ::1 using 0:($2 < 1.15 && $2 > 0.85 ? $2 + 0.18 : $2 + 0.08):4 with labels font ",9", \
     1 with lines lw 2 dt 2 lc rgb "black"
