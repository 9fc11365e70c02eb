# Clustered bar chart: one cluster per workload, one bar per peer.
# Called by tools/bench as:
#   gnuplot -e "datafile='X.dat'; outfile='X.png'; ctitle='...'; ylab='...'; logy=0" clustered.gp
# X.dat: tab-separated, first line "workload<TAB>peer1<TAB>peer2...", then one
# line per workload; "?" marks a figure that is n/a (drawn as a gap).
if (!exists("logy")) logy = 0
set terminal pngcairo size 1100,520 font "DejaVu Sans,10" noenhanced
set output outfile
set datafile separator "\t"
set datafile missing "?"
set title ctitle
set ylabel ylab
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key outside right top vertical
set xtics rotate by -15 scale 0
set yrange [0:*]
if (logy) { set logscale y; set yrange [*:*] }
ncol = system("head -1 '".datafile."' | awk -F'\t' '{print NF}'") + 0
plot for [i=2:ncol] datafile using i:xtic(1) title columnheader(i)
