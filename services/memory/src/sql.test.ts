import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHnswIndexSql, fuseRrf, hnswIndexName, textHalfSql, vectorHalfSql, vectorLiteral, type HalfRow } from './sql.ts';

const row = (id: string, key = 0): HalfRow => ({
  id,
  source: 'user',
  content: `c${id}`,
  created_ms: 0,
  is_document: false,
  doc_key: null,
  title: null,
  channel: null,
  thread_id: null,
  key,
});

describe('search SQL', () => {
  it('fuses by reciprocal rank, rewarding rows found by both halves', () => {
    const text = [row('1'), row('2'), row('3')];
    const vector = [row('3', 0.1), row('1', 0.2), row('4', 0.3)];
    const f = fuseRrf(text, vector, 60, 10);
    assert.deepEqual(
      f.map((x) => x.id),
      ['1', '3', '2', '4'],
    );
    assert.equal(f[0]!.textRank, 1);
    assert.equal(f[0]!.vectorRank, 2);
    assert.ok(Math.abs(f[0]!.score - (1 / 61 + 1 / 62)) < 1e-12);
    assert.equal(f[1]!.distance, 0.1);
    assert.equal(fuseRrf(text, vector, 60, 2).length, 2);
    // Equal scores: the newer (larger) id first.
    assert.deepEqual(
      fuseRrf([row('9')], [row('10')], 60, 5).map((x) => x.id),
      ['10', '9'],
    );
  });

  it('never puts request values into the SQL text', () => {
    const evil = "x'); drop table memory.vector_embeddings; --";
    const t = textHalfSql({
      userId: evil,
      terms: [evil, '$1'],
      candidates: 40,
      exclude: { channel: evil, threadId: evil },
      sources: [evil],
    });
    assert.ok(!t.text.includes('drop table'));
    assert.deepEqual(t.values.slice(0, 3), [evil, evil, evil]);
    const v = vectorHalfSql({ userId: evil, candidates: 40, vector: '[1,2]', model: evil, dim: 2, maxDistance: 1.2 });
    assert.ok(!v.text.includes('drop table'));
    assert.match(v.text, /embedding::vector\(2\) <-> \$2::vector\(2\)/);
  });

  it('writes only validated integers into index DDL and vector literals', () => {
    assert.equal(hnswIndexName(384, { m: 16, efConstruction: 64 }), 'vector_embeddings_hnsw_d384_m16_ef64');
    assert.match(
      createHnswIndexSql(384, { m: 16, efConstruction: 64 }, true),
      /^create index concurrently if not exists .* where embedding_dim = 384$/,
    );
    assert.throws(() => createHnswIndexSql(1.5, { m: 16, efConstruction: 64 }, false), RangeError);
    assert.throws(() => createHnswIndexSql(384, { m: Number.NaN, efConstruction: 64 }, false), RangeError);
    assert.equal(vectorLiteral(new Float32Array([0.5, -1, 0])), '[0.5,-1,0]');
    assert.throws(() => vectorLiteral([1, Number.NaN]), RangeError);
  });
});
