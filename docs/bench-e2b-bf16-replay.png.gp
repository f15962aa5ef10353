set terminal pngcairo size 900,520
set output 'docs/bench-e2b-bf16-replay.png'
set title '/work/ckpt/e2b-full, replay drafter, 2 threads, 28.3 GB/s' noenhanced
set xlabel 'draft length K'
set ylabel 'speedup over plain decoding'
set y2label 'acceptance rate'
set y2range [0:1.05]
set ytics nomirror
set y2tics
set grid
set key top left
set yrange [0:*]
plot 'docs/bench-e2b-bf16-replay.png.dat' using 1:2 with linespoints lw 2 pt 7 title 'speedup', 'docs/bench-e2b-bf16-replay.png.dat' using 1:3 axes x1y2 with linespoints lw 2 pt 5 title 'acceptance', 1 with lines dt 2 title 'plain'
