/* One layer's update of the recorder's statistics in one pass (emoneuron.recording.kernel).
 *
 * Every result equals the torch operators' of emoneuron.recording.accumulator exactly:
 * per-sequence float32 sums added in token order (built with -ffp-contract=off, so v * v is
 * rounded before it is added, as torch.square does), then added into their cells in float64
 * in sequence order; maxima that keep a NaN; the histogram bin of each value's float16
 * rounding; and the top-k ranked by the key of statistics.best_indices. */
#include <stdint.h>
#include <string.h>

/* Columns per work item: a tile's histogram (TILE x 32 int32) and rows stay in cache. */
#define TILE 256
#define BINS 32

/* The bin of a float32 (its bits) by its float16 rounding: 16 + octave for x >= 0 and
 * 15 - octave for x < 0 (-0.0 too), the octave of |x| above 2^-10 clamped to 0 .. 15.
 * Adding 0x1000 below the exponent carries into it exactly when rounding to float16's 10
 * mantissa bits (ties to even) reaches the next power of two; 116 = 127 - 11 rebases the
 * exponent so that 2^-10 is octave 1. Subnormal float16 values (|x| < 2^-14) all land in
 * octave 0 whichever way they round, and anything from 2^4 up, inf and NaN in octave 15. */
static inline int32_t bin_of(uint32_t bits) {
    int32_t octave = (int32_t)(((bits & 0x7fffffffu) + 0x1000u) >> 23) - 116;
    octave = octave < 0 ? 0 : (octave > 15 ? 15 : octave);
    return (bits >> 31) ? BINS / 2 - 1 - octave : BINS / 2 + octave;
}

/* The value's bits made order-preserving above the dialogue hash's low 20 bits. */
static inline int64_t rank_key(float value, int64_t dialogue) {
    int32_t bits;
    memcpy(&bits, &value, sizeof bits);
    int32_t ordered = bits ^ ((bits >> 31) & 0x7fffffff);
    return (int64_t)((uint64_t)(int64_t)ordered << 20) | (dialogue & 0xfffff);
}

typedef struct {
    const float *activation;   /* (rows, width) */
    int64_t width;
    const int64_t *positions;  /* (n_counted,) counted rows */
    const int64_t *sequence;   /* (n_counted,) their sequence */
    int64_t n_counted;
    const int64_t *cell;       /* (n_sequences,) emotion * groups + group */
    const int64_t *dialogue;   /* (n_sequences,) dialogue hash */
    int64_t n_sequences;
    float *scratch;            /* (4, n_sequences, width): > 0, sum, square, maximum */
    int32_t *histogram;        /* (width, 32), this batch's emotion */
    double *active, *sum, *sum_sq;  /* (cells, width) rows, cell_stride apart */
    int64_t cell_stride;
    float *top_values;         /* (top_k, width), sorted down */
    int64_t *top_dialogue;     /* (top_k, width) */
    int64_t top_k;
} Layer;

static void update_tile(const Layer *layer, int64_t first, int64_t last) {
    int64_t width = layer->width, columns = last - first, plane = layer->n_sequences * width;
    float *positive = layer->scratch, *sum = positive + plane, *sum_sq = sum + plane,
          *strongest = sum_sq + plane;
    for (int64_t b = 0; b < layer->n_sequences; ++b)
        for (int64_t w = first; w < last; ++w) {
            int64_t at = b * width + w;
            positive[at] = sum[at] = sum_sq[at] = 0.0f;
            strongest[at] = -__builtin_inff();
        }
    int32_t slot[TILE];
    int32_t *tile_histogram = layer->histogram + first * BINS;
    for (int64_t n = 0; n < layer->n_counted; ++n) {
        const float *row = layer->activation + layer->positions[n] * width + first;
        int64_t at = layer->sequence[n] * width + first;
        float *p = positive + at, *s = sum + at, *q = sum_sq + at, *m = strongest + at;
        for (int64_t w = 0; w < columns; ++w) {
            float v = row[w];
            p[w] += (float)(v > 0.0f);
            s[w] += v;
            q[w] += v * v;
            m[w] = (v > m[w] || v != v) ? v : m[w];
        }
        /* Bins first, increments after: the first loop vectorises, the second cannot. */
        for (int64_t w = 0; w < columns; ++w) {
            uint32_t bits;
            memcpy(&bits, row + w, sizeof bits);
            slot[w] = (int32_t)w * BINS + bin_of(bits);
        }
        for (int64_t w = 0; w < columns; ++w) tile_histogram[slot[w]] += 1;
    }
    for (int64_t b = 0; b < layer->n_sequences; ++b) {
        int64_t row = layer->cell[b] * layer->cell_stride;
        for (int64_t w = first; w < last; ++w) {
            layer->active[row + w] += (double)positive[b * width + w];
            layer->sum[row + w] += (double)sum[b * width + w];
            layer->sum_sq[row + w] += (double)sum_sq[b * width + w];
        }
    }
    /* Each sequence's maximum enters its column's top-k list by insertion. */
    float *values = layer->top_values;
    int64_t *dialogues = layer->top_dialogue, k = layer->top_k;
    for (int64_t w = first; w < last; ++w)
        for (int64_t b = 0; b < layer->n_sequences; ++b) {
            float value = strongest[b * width + w];
            int64_t dialogue = layer->dialogue[b], key = rank_key(value, dialogue);
            int64_t j = k - 1;
            if (key <= rank_key(values[j * width + w], dialogues[j * width + w])) continue;
            for (; j > 0 && key > rank_key(values[(j - 1) * width + w],
                                           dialogues[(j - 1) * width + w]); --j) {
                values[j * width + w] = values[(j - 1) * width + w];
                dialogues[j * width + w] = dialogues[(j - 1) * width + w];
            }
            values[j * width + w] = value;
            dialogues[j * width + w] = dialogue;
        }
}

/* Split over column tiles on the OpenMP threads of the process (torch's own, when both use
 * the same runtime): a tile's columns of every output belong to one thread. */
void update_layer(const Layer *layer) {
    int64_t tiles = (layer->width + TILE - 1) / TILE;
#pragma omp parallel for schedule(static)
    for (int64_t tile = 0; tile < tiles; ++tile) {
        int64_t first = tile * TILE;
        update_tile(layer, first, first + TILE < layer->width ? first + TILE : layer->width);
    }
}
